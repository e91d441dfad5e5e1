#!/usr/bin/env python3
"""HuggingFace anchor for bench/collect_gpu: transformers' eager GPT2Model with forward hooks on
every block's mlp.act that keep, per neuron, the top-K excerpts by excerpt max (values and excerpt
ids, via torch.topk over the running top-K concatenated with the batch's maxima). Random HF init
on the GPU in the target dtype; same batch shape and random tokens as collect_gpu.

Prints one line per (model, precision), in collect_gpu's format:
  RESULT hf <model> <precision> <tokens/s> <ms/batch> no_capture=<tokens/s> ...
fp32 runs with TF32 disabled, tf32 is fp32 with torch.backends.cuda.matmul.allow_tf32 = True,
bf16 is the model in bfloat16.

usage: hf_anchor.py [--models small,xl] [--precisions fp32,tf32,bf16] [--batch 256] [--seq 64]
                    [--seconds 4] [--warmup 6] [--min-batches 3] [--topk 20]
"""
import argparse
import sys
import time
import traceback

CONFIGS = {
    "small": dict(n_embd=768, n_layer=12, n_head=12),
    "medium": dict(n_embd=1024, n_layer=24, n_head=16),
    "large": dict(n_embd=1280, n_layer=36, n_head=20),
    "xl": dict(n_embd=1600, n_layer=48, n_head=25),
}


class TopK:
    """Per-neuron top-k excerpt maxima of one layer, kept on the GPU."""

    def __init__(self, torch, k):
        self.torch = torch
        self.k = k
        self.values = None  # [k, n_inner]
        self.ids = None  # [k, n_inner] int64
        self.first_id = 0

    def __call__(self, module, inputs, output):
        torch = self.torch
        mx = output.amax(dim=1)  # [B, n_inner]: max over the excerpt's tokens
        B = mx.shape[0]
        ids = torch.arange(self.first_id, self.first_id + B, device=mx.device, dtype=torch.int64)
        ids = ids[:, None].expand(B, mx.shape[1])
        if self.values is not None:
            mx = torch.cat([self.values, mx], dim=0)
            ids = torch.cat([self.ids, ids], dim=0)
        k = min(self.k, mx.shape[0])
        self.values, idx = torch.topk(mx, k, dim=0)
        self.ids = torch.gather(ids, 0, idx)


def run(torch, transformers, model_name, precision, a):
    cfg_kw = dict(CONFIGS[model_name])
    cfg = transformers.GPT2Config(n_positions=1024, vocab_size=50257, n_inner=4 * cfg_kw["n_embd"], **cfg_kw)
    try:
        cfg._attn_implementation = "eager"
    except Exception:  # noqa: BLE001  (older/newer config classes: the line below reports what runs)
        pass
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    t_init = time.time()
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(dtype)  # parameters are created (and HF-initialised) in dtype ...
    except Exception:  # noqa: BLE001
        pass  # ... or in fp32 and converted below
    try:
        with torch.device("cuda"):
            model = transformers.GPT2Model(cfg)  # HF's own random init, on the GPU
    finally:
        torch.set_default_dtype(old)
    model = model.to(device="cuda", dtype=dtype).eval()
    attn = getattr(model.config, "_attn_implementation", None) or "eager"
    gen = torch.Generator(device="cuda").manual_seed(7)
    pool = [torch.randint(0, 50257, (a.batch, a.seq), device="cuda", generator=gen) for _ in range(4)]
    init_s = time.time() - t_init

    def timed(capture, seconds, warmup):
        hooks, trackers = [], []
        if capture:
            for block in model.h:
                t = TopK(torch, a.topk)
                trackers.append(t)
                hooks.append(block.mlp.act.register_forward_hook(t))
        try:
            step = 0

            def batch():
                nonlocal step
                with torch.inference_mode():
                    model(input_ids=pool[step % len(pool)], use_cache=False)
                for t in trackers:
                    t.first_id += a.batch
                step += 1

            for _ in range(warmup):
                batch()
            torch.cuda.synchronize()
            n, t0, elapsed = 0, time.time(), 0.0
            while n < a.min_batches or elapsed < seconds:
                batch()
                n += 1
                if n >= a.min_batches:
                    torch.cuda.synchronize()
                    elapsed = time.time() - t0
                if n >= 1000:
                    break
            torch.cuda.synchronize()
            elapsed = time.time() - t0
            return n, elapsed
        finally:
            for h in hooks:
                h.remove()

    n, elapsed = timed(True, a.seconds, a.warmup)
    tps = n * a.batch * a.seq / elapsed
    n2, elapsed2 = timed(False, a.seconds / 2, min(2, a.warmup))
    tps2 = n2 * a.batch * a.seq / elapsed2
    print(f"RESULT hf {model_name} {precision} {tps:.0f} {1e3 * elapsed / n:.2f} no_capture={tps2:.0f} "
          f"batch={a.batch}x{a.seq} batches={n} attn={attn} init={init_s:.1f}s", flush=True)
    del model, pool
    torch.cuda.empty_cache()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="small,xl")
    p.add_argument("--precisions", default="fp32,tf32,bf16")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--warmup", type=int, default=6)
    p.add_argument("--min-batches", type=int, default=3)
    p.add_argument("--topk", type=int, default=20)
    a = p.parse_args()
    try:
        import torch
        import transformers
    except Exception as e:  # noqa: BLE001
        print(f"hf_anchor: cannot import torch/transformers: {e}", flush=True)
        return 1
    if not torch.cuda.is_available():
        print("hf_anchor: no CUDA device visible to torch", flush=True)
        return 1
    print(f"hf_anchor: torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.cuda.get_device_name(0)}", flush=True)
    failures = 0
    for model_name in a.models.split(","):
        for precision in a.precisions.split(","):
            try:
                run(torch, transformers, model_name, precision, a)
            except Exception as e:  # noqa: BLE001
                failures += 1
                msg = str(e).replace("\n", " ")[:300]
                print(f"RESULT hf {model_name} {precision} FAILED {type(e).__name__}: {msg}", flush=True)
                traceback.print_exc(file=sys.stdout)
                torch.cuda.empty_cache()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
