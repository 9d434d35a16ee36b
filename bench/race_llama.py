"""bench/race_llama.py: llama.cpp (llama-cpp-python) greedy decode speed for bench/race.sh.

Loads the GGUF, encodes the prompt with <bos> (as `gemmatrain generate` does by default), then
greedily generates NEW + 1 tokens ignoring end-of-sequence; the decode time is the time from the
first generated token to the last, so NEW decode steps (one token forward and a greedy pick each),
without the load and the prompt's prefill, the same count bench/race.sh takes from gemmatrain as
the difference of a NEW + 1 and a 1 token run. Prints the text and one RESULT line: decode tokens/s,
prefill + first token seconds, peak RSS (this process's high-water mark, MB).

usage: python3 bench/race_llama.py GGUF THREADS NEW PROMPT
"""
import resource
import sys
import time


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    path, threads, new, prompt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    import llama_cpp

    llm = llama_cpp.Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=512,
                          verbose=False)
    ids = llm.tokenize(prompt.encode(), add_bos=True)
    out, stamps = [], []
    t0 = time.perf_counter()
    for tok in llm.generate(ids, top_k=1, temp=0.0, reset=True):
        stamps.append(time.perf_counter())
        out.append(tok)
        if len(out) == new + 1:
            break
    decode = stamps[-1] - stamps[0]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    text = llm.detokenize(out).decode("utf-8", "replace").replace("\n", " ")
    print(f"llama-cpp-python {llama_cpp.__version__}: {prompt}{text[:200]}")
    print(f"RESULT decode_tokens_s={new / decode:.2f} first_s={stamps[0] - t0:.3f} rss_mb={rss:.0f}")


if __name__ == "__main__":
    main()
