-- coda-lsp for Neovim: local CoDA completions (inline ghost text on 0.12, completion items on 0.11 and older) and
-- "Fill this block with CoDA" (a code action).
--
-- Neovim 0.11+: put this file at ~/.config/nvim/lsp/coda.lua and add to init.lua
--   vim.lsp.config('coda', { cmd = { '/path/to/coda-lsp/.venv/bin/coda-lsp' } })  -- only if not on PATH
--   vim.lsp.enable('coda')
-- Older Neovim: see the README's "Editors" section (vim.lsp.start with this table).
--
-- Keys in buffers it attaches to: <Tab> in insert mode accepts the ghost text (0.12), <M-]> / <M-[> cycle
-- candidates, <leader>cf fills the block at the cursor; :CodaFill and :CodaStatus do the same from the command line.

local FILL_TITLE = 'Fill this block with CoDA'

--- "Fill this block with CoDA" at the cursor (or on the visual selection), resolved and applied.
local function fill_block()
  vim.lsp.buf.code_action({
    filter = function(action) return action.title == FILL_TITLE end,
    apply = true,
  })
end

--- The server's coda/status (model state, device, recent latency) as a message.
local function show_status(client, bufnr)
  -- 0.11 made request a method; 0.10 and older take the client as a field call
  local request = vim.fn.has('nvim-0.11') == 1 and function(...) return client:request(...) end or client.request
  request('coda/status', {}, function(err, status)
    if err then
      vim.notify('coda-lsp: ' .. err.message, vim.log.levels.ERROR)
      return
    end
    local latency = status.latency.totalP50Ms and string.format(', p50 %d ms', status.latency.totalP50Ms) or ''
    vim.notify(string.format('coda-lsp: %s (%s on %s%s)', status.state, status.modelPath, status.device, latency))
  end, bufnr)
end

--- Tell the server where the user looks (a buffer entered, insert mode, the cursor at rest), so that it computes
--- the context there before the first keystroke: a cold start costs seconds on a CPU with CoDA-1.7B.
local function focus(client, bufnr)
  if vim.api.nvim_get_current_buf() ~= bufnr then
    return
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  if vim.fn.has('nvim-0.11') == 1 then
    client:notify('coda/didFocus', params)
  else
    client.notify('coda/didFocus', params)
  end
end

local function on_attach(client, bufnr)
  vim.api.nvim_create_autocmd({ 'BufEnter', 'InsertEnter', 'CursorHold' }, {
    buffer = bufnr,
    callback = function() focus(client, bufnr) end,
    desc = 'coda-lsp: the cursor to prepare for',
  })
  focus(client, bufnr)
  if vim.lsp.inline_completion then -- Neovim 0.12: ghost text while typing
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
    vim.keymap.set('i', '<Tab>', function()
      if not vim.lsp.inline_completion.get() then
        return '<Tab>'
      end
    end, { expr = true, buffer = bufnr, desc = 'CoDA: accept the suggestion' })
    vim.keymap.set('i', '<M-]>', function() vim.lsp.inline_completion.select({ count = 1 }) end,
      { buffer = bufnr, desc = 'CoDA: next suggestion' })
    vim.keymap.set('i', '<M-[>', function() vim.lsp.inline_completion.select({ count = -1 }) end,
      { buffer = bufnr, desc = 'CoDA: previous suggestion' })
  elseif vim.lsp.completion then -- Neovim 0.11: the same completions as completion items, while typing
    vim.lsp.completion.enable(true, client.id, bufnr, { autotrigger = true })
  else -- older: completion items with <C-x><C-o>
    vim.bo[bufnr].omnifunc = 'v:lua.vim.lsp.omnifunc'
  end
  vim.keymap.set({ 'n', 'x' }, '<leader>cf', fill_block, { buffer = bufnr, desc = 'CoDA: fill this block' })
  vim.api.nvim_buf_create_user_command(bufnr, 'CodaFill', fill_block, { desc = 'CoDA: fill this block' })
  vim.api.nvim_buf_create_user_command(bufnr, 'CodaStatus', function() show_status(client, bufnr) end,
    { desc = 'coda-lsp: model state and latency' })
end

return {
  -- `coda-lsp` serves the model shipped with it; add '--model', 'Salesforce/CoDA-v0-Instruct' (after
  -- `huggingface-cli download Salesforce/CoDA-v0-Instruct`) or a checkpoint folder, and '--device', 'cuda'.
  cmd = { 'coda-lsp' },
  filetypes = { 'python', 'javascript', 'javascriptreact', 'typescript', 'typescriptreact', 'go', 'rust' },
  root_markers = { '.git', 'pyproject.toml', 'package.json', 'go.mod', 'Cargo.toml' },
  -- Section "coda", answered on workspace/configuration: any server setting (see the README), e.g.
  -- settings = { coda = { maxTokens = 32, steps = 8 } }
  settings = { coda = vim.empty_dict() },
  on_attach = on_attach,
}
