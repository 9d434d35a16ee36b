"""bench/bf16_torch.py: torch's bf16 matmul (oneDNN on CPU) on bench/bf16_kern's shapes and
orientations, printing the same RESULT lines, for bench/bf16_race.sh.

    python3 bench/bf16_torch.py [REPS=5] [M=512]    (THREADS env, default 2)

Operands are bf16 tensors made before timing (as a bf16-autocast step holds them: frozen bf16
weights, activations already bf16), so torch's times exclude the fp32 -> bf16 rounding our
contender pays; y = x @ W.T and dx += dy @ W (out-of-place add, as autograd accumulates);
lmhead: x @ E_block.T over 8192-row blocks of a 262144 x 640 table. gflops: median wall time;
cpu_gflops: median process CPU time divided by the threads."""
import os
import sys
import time

import torch


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 512
    th = int(os.environ.get("THREADS", "2"))
    torch.set_num_threads(th)
    torch.manual_seed(0)
    shapes = [("q", 1024, 640), ("kv", 256, 640), ("o", 640, 1024), ("gate", 2048, 640),
              ("down", 640, 2048), ("lmhead", 262144, 640)]
    for name, n, k in shapes:
        x = torch.randn(m, k).bfloat16()
        w = torch.randn(n, k).bfloat16()
        lm = n > 100000
        vb = 8192 if lm else n
        dy = torch.randn(m, vb).bfloat16()
        dx = torch.zeros(m, k)

        def fwd():
            for v0 in range(0, n, vb):
                torch.matmul(x, w[v0:v0 + vb].T)

        def bwd():
            dx.add_(torch.matmul(dy, w).float())

        for dname, f in (("fwd", fwd), ("bwd", bwd)):
            if lm and dname == "bwd":
                continue
            f()
            wall, cpu = [], []
            for _ in range(reps):
                t0, c0 = time.perf_counter(), time.process_time()
                f()
                wall.append(time.perf_counter() - t0)
                cpu.append((time.process_time() - c0) / th)
            wall.sort()
            cpu.sort()
            fl = 2.0 * m * n * k
            print(f"RESULT shape={name} dir={dname} M={m} N={n} K={k} gflops={fl / wall[reps // 2] / 1e9:.1f} "
                  f"cpu_gflops={fl / cpu[reps // 2] / 1e9:.1f}", flush=True)


if __name__ == "__main__":
    main()
