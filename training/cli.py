"""coda-train {tokenize, pretrain, midtrain, sft, plan, export, eval-loss}: argument parsing only, logic elsewhere.

Config overrides follow the preset as `--section.key=value` (or `section.key=value`). Bad input ends with a
one-line `coda-train: error: ...` on stderr and exit status 2; a NaN stop is reported the same way.

Multi-host TPU (e.g. a v4-64 slice, 8 hosts): the same command runs on every host, and `--distributed` calls
jax.distributed.initialize(), which reads the coordinator from the TPU metadata:
  gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all --command \
    "coda-train pretrain --distributed --config 1p7b --mesh.fsdp=-1 --data.path=/mnt/data/pretrain"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from coda_training.errors import TrainingError

STAGES = ("pretrain", "midtrain", "sft")
CHIP_NAMES = ("v4", "v5e", "h100", "h200")  # keys of coda_training.plan.CHIPS (imported lazily: it loads jax)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coda-train", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    tok = sub.add_parser("tokenize", help="text / JSONL / source folders -> token shards + manifest")
    tok.add_argument("inputs", nargs="+", help="files or folders")
    tok.add_argument("--tokenizer", required=True, help="folder with the tokenizer files")
    tok.add_argument("--out", required=True, help="new folder to write (must not exist or be empty)")
    tok.add_argument("--kind", choices=("packed", "sft", "infill"), default="packed")
    tok.add_argument("--seq-len", type=int, default=1024, help="row length for sft / infill")
    tok.add_argument("--shard-tokens", type=int, default=1 << 26, help="packed: tokens per shard file")
    tok.add_argument("--seed", type=int, default=0, help="infill: span positions")
    tok.add_argument("--examples-per-file", type=int, default=4, help="infill: spans per source file")
    tok.add_argument("--max-middle", type=int, default=64, help="infill: longest middle in tokens")
    tok.add_argument("--max-tail", type=int, default=16, help="infill: longest pad tail in tokens")
    tok.add_argument("--max-spans", type=int, default=1, help="infill: most holes per row, each with a pad tail")

    for stage in STAGES:
        run = sub.add_parser(stage, help=f"run the {stage} stage")
        run.add_argument("--config", required=True, help="preset name (tiny, 1p7b) or a YAML file")
        run.add_argument("--distributed", action="store_true", help="multi-host: jax.distributed.initialize()")

    plan = sub.add_parser("plan", help="per-device memory of a training config, compiled on abstract inputs")
    plan.add_argument("--config", required=True, help="preset name (tiny, 1p7b) or a YAML file")
    plan.add_argument("--stage", choices=STAGES, default="pretrain", help="stage the preset name belongs to")
    plan.add_argument("--devices", type=int, default=None,
                      help="plan for a mesh of this many devices, simulated by fake CPU devices (default: this "
                           "machine's own devices)")
    plan.add_argument("--chip", choices=sorted(CHIP_NAMES), default="v4", help="device whose memory to fit")
    plan.add_argument("--hbm", type=int, default=None, help="per-device bytes to fit instead of --chip")
    plan.add_argument("--no-compile", action="store_true", help="analytic estimate only (no XLA compile)")
    plan.add_argument("--max-rows", action="store_true",
                      help="also search the most sequences per device (grad_accum 1) that fit, by compiling")

    exp = sub.add_parser("export", help="a run's checkpoint -> HF CoDA folder")
    exp.add_argument("--run-dir", required=True, help="the run to export (its config.yaml and checkpoints/)")
    exp.add_argument("--out", required=True, help="new folder to write")
    exp.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    exp.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the run's tokenizer_dir)")

    ev = sub.add_parser("eval-loss", help="masked-diffusion loss of a run (or an HF folder) on eval data")
    ev.add_argument("--config", required=True, help="preset name or YAML file (e.g. <run_dir>/config.yaml)")
    ev.add_argument("--stage", choices=STAGES, default="pretrain", help="stage the preset name belongs to")
    ev.add_argument("--hf", default=None, help="evaluate this HF folder instead of the run's checkpoint")
    ev.add_argument("--batches", type=int, default=4, help="number of eval batches")
    return parser


def _overrides(extra: list[str]) -> list[str]:
    for item in extra:
        if "=" not in item:
            raise TrainingError(f"unrecognised argument {item!r} (overrides look like --section.key=value)")
    return extra


def _tokenize(args: argparse.Namespace) -> None:
    from coda_training.data.tokenize import TokenizeOptions, tokenize
    from coda_training.data.tokenizer import load_tokenizer

    opts = TokenizeOptions(kind=args.kind, seq_len=args.seq_len, shard_tokens=args.shard_tokens, seed=args.seed,
                           examples_per_file=args.examples_per_file, max_middle=args.max_middle,
                           max_tail=args.max_tail, max_spans=args.max_spans)
    manifest = tokenize(args.inputs, load_tokenizer(args.tokenizer), args.out, opts)
    rows = manifest.get("num_examples", manifest.get("num_documents"))
    print(f"wrote {args.out}: {manifest['kind']}, {manifest['num_tokens']:,} tokens, {rows} "
          f"{'examples' if manifest['kind'] == 'examples' else 'documents'}", file=sys.stderr)


def _train(stage: str, args: argparse.Namespace, extra: list[str]) -> None:
    from coda_training.config import load_config

    cfg = load_config(stage, args.config, _overrides(extra))
    if args.distributed:
        import jax

        jax.distributed.initialize()
    from coda_training.trainer import train

    summary = train(cfg)
    print(f"{stage} done: {summary.final_step} steps, loss {summary.last_loss:.4f}, {summary.elapsed_s:.1f}s, "
          f"checkpoints in {cfg.run_dir}/checkpoints", file=sys.stderr)


def _plan(args: argparse.Namespace, extra: list[str]) -> None:
    import os

    from coda_training.config import load_config

    cfg = load_config(args.stage, args.config, _overrides(extra))
    if args.devices is not None:
        if args.devices < 1:
            raise TrainingError("--devices must be at least 1")
        if "jax" not in sys.modules:  # XLA reads its flags once, when jax loads
            os.environ["JAX_PLATFORMS"] = "cpu"
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                       f" --xla_force_host_platform_device_count={args.devices}").strip()
    import jax

    from coda_training import plan as plan_lib

    devices = jax.devices()
    if args.devices is not None:
        if len(devices) < args.devices:
            raise TrainingError(f"jax already started with {len(devices)} devices; cannot plan for {args.devices}")
        devices = devices[:args.devices]
    chip = plan_lib.CHIPS[args.chip]
    if args.hbm is not None:
        chip = plan_lib.Chip(f"--hbm {args.hbm}", args.hbm, "command line")
    result, _ = plan_lib.plan(cfg, devices, compile=not args.no_compile)
    print(plan_lib.format_plan(cfg, result, chip))
    if args.max_rows:
        known = {result.rows_per_device: result.compiled.total_bytes} if result.compiled and \
            cfg.data.grad_accum == 1 else None
        rows, measured = plan_lib.largest_rows_per_device(cfg, devices, chip.usable_bytes, known)
        tried = ", ".join(f"{r}: {plan_lib.gib(b)}" for r, b in measured)
        print(f"\nlargest micro-batch that fits {chip.name}: {rows} x {cfg.data.seq_len} tokens per device "
              f"(compiled GiB by rows: {tried})")


def _export(args: argparse.Namespace, extra: list[str]) -> None:
    from coda_training import hf_io
    from coda_training.config import load_config
    from coda_training.trainer import context_for, load_run_params

    config_path = Path(args.run_dir) / "config.yaml"
    if not config_path.is_file():
        raise TrainingError(f"{args.run_dir} has no config.yaml; is it a coda-train run directory?")
    stage = _stage_of(config_path)
    cfg = load_config(stage, str(config_path), _overrides(extra) + [f"run_dir={args.run_dir}"])
    tokenizer = args.tokenizer or cfg.tokenizer_dir
    if not tokenizer:
        raise TrainingError("no tokenizer folder: pass --tokenizer or set tokenizer_dir in the run config")
    params, step = load_run_params(cfg, context_for(cfg), args.step)
    out = hf_io.export(params, cfg.model, tokenizer, args.out)
    print(f"exported step {step} of {args.run_dir} to {out}", file=sys.stderr)


def _stage_of(config_path: Path) -> str:
    import yaml

    stage = (yaml.safe_load(config_path.read_text()) or {}).get("stage", "pretrain")
    return stage if stage in STAGES else "pretrain"


def _eval_loss(args: argparse.Namespace, extra: list[str]) -> None:
    from coda_training import hf_io
    from coda_training.config import load_config
    from coda_training.train_step import param_shapes
    from coda_training.trainer import context_for, evaluate, load_run_params

    cfg = load_config(args.stage, args.config, _overrides(extra))
    if args.batches < 1:
        raise TrainingError("--batches must be at least 1")
    ctx = context_for(cfg)
    if args.hf:
        params = hf_io.load_params(args.hf, cfg.model, ctx.state_sharding["params"], param_shapes(cfg))
        source = args.hf
    else:
        params, step = load_run_params(cfg, ctx)
        source = f"{cfg.run_dir} step {step}"
    result = evaluate(cfg, params, ctx, args.batches)
    print(json.dumps({"source": source, **result}))


def main(argv: list[str] | None = None) -> int:
    args, extra = _parser().parse_known_args(argv)
    try:
        if args.command == "tokenize":
            if extra:
                raise TrainingError(f"unrecognised arguments: {' '.join(extra)}")
            _tokenize(args)
        elif args.command in STAGES:
            _train(args.command, args, extra)
        elif args.command == "plan":
            _plan(args, extra)
        elif args.command == "export":
            _export(args, extra)
        else:
            _eval_loss(args, extra)
    except TrainingError as exc:
        print(f"coda-train: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
