-- Plays a user in headless Neovim with editors/nvim/lsp/coda.lua against the real coda-lsp: type in insert mode,
-- accept the ghost text with <Tab>, then :CodaFill on an empty body. Writes what it saw as JSON to
-- $CODA_NVIM_RESULT and quits; tests/clients/test_neovim.py asserts on it.
--
-- Keys go through the typeahead as a user's would, so the script runs as a coroutine that hands the main loop
-- back while it waits: only the main loop processes typed keys (blocking waits would never see insert mode).

local result = {}
local driver

local function finish(err)
  result.error = err
  local file = assert(io.open(vim.env.CODA_NVIM_RESULT, 'w'))
  file:write(vim.json.encode(result))
  file:close()
  vim.cmd('qa!')
end

local function resume()
  local ok, err = coroutine.resume(driver)
  if not ok then
    finish(tostring(err))
  elseif coroutine.status(driver) == 'dead' then
    finish(nil)
  end
end

--- Yield to the main loop until `condition()` holds; an error naming `what` after `timeout_ms`.
local function wait_for(condition, timeout_ms, what)
  local deadline = vim.uv.now() + timeout_ms
  while not condition() do
    if vim.uv.now() > deadline then
      error('timed out waiting for ' .. what, 0)
    end
    vim.defer_fn(resume, 20)
    coroutine.yield()
  end
end

local function type_keys(keys, flags)
  vim.api.nvim_feedkeys(vim.keycode(keys), flags, false)
end

local function attached_client()
  local client
  wait_for(function()
    client = vim.lsp.get_clients({ bufnr = 0, name = 'coda' })[1]
    return client ~= nil and client.initialized
  end, 30000, 'coda-lsp to attach')
  return client
end

local function lines()
  return vim.api.nvim_buf_get_lines(0, 0, -1, false)
end

local function run()
  vim.cmd.edit(vim.env.CODA_NVIM_INLINE)
  local client = attached_client()
  local status
  wait_for(function()
    client:request('coda/status', {}, function(_, answer) status = answer end, 0)
    return status ~= nil and status.state ~= 'loading'
  end, 60000, 'the model to load')
  result.state = status.state
  result.config_name = client.config.name

  -- Line 2 reads "    total =": append a space in insert mode, as typing; the ghost text appears after it.
  vim.api.nvim_win_set_cursor(0, { 2, 0 })
  type_keys('A ', 'n')
  wait_for(function() return vim.api.nvim_get_current_line() == '    total = ' end, 5000, 'the typed space')
  result.mode = vim.api.nvim_get_mode().mode
  result.typed_line = vim.api.nvim_get_current_line()
  local namespace = vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion']
  local marks = {}
  wait_for(function()
    marks = vim.api.nvim_buf_get_extmarks(0, namespace, 0, -1, { details = true })
    return #marks > 0
  end, 20000, 'ghost text')
  local ghost = {}
  for _, chunk in ipairs(marks[1][4].virt_text or {}) do
    table.insert(ghost, chunk[1])
  end
  result.ghost = table.concat(ghost)
  result.ghost_row = marks[1][2]
  type_keys('<Tab>', 'm') -- through the config's insert-mode mapping
  wait_for(function() return vim.api.nvim_get_current_line() ~= result.typed_line end, 5000, 'the accepted text')
  result.accepted_lines = lines()
  result.cursor = vim.api.nvim_win_get_cursor(0)
  type_keys('<Esc>', 'n')
  wait_for(function() return vim.api.nvim_get_mode().mode == 'n' end, 5000, 'normal mode')

  -- "Fill this block" on the empty (pass) body of mean().
  vim.cmd.edit(vim.env.CODA_NVIM_FILL)
  attached_client()
  vim.api.nvim_win_set_cursor(0, { 2, 4 })
  local tick = vim.b.changedtick
  vim.cmd('CodaFill')
  wait_for(function() return vim.b.changedtick ~= tick end, 30000, 'the fill edit')
  result.filled_lines = lines()

  -- Work ahead: the buffers entered above told the server their cursors, which it prepared for.
  local ahead
  wait_for(function()
    client:request('coda/status', {}, function(_, answer) ahead = answer and answer.workAhead end, 0)
    return ahead ~= nil and ahead.focusWarms > 0
  end, 20000, 'a focused cursor\'s canvas')
  result.work_ahead = ahead
end

driver = coroutine.create(run)
vim.schedule(resume)
