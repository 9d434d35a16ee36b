#!/usr/bin/env python3
"""Write datasets/media4/{train,eval}.jsonl: the spoken task (datasets/speech, one clip a record)
and the shapes task (datasets/shapes, one picture a record) together for Gemma 4, whose prompts
mark media with <|audio|> and <|image|> (Gemma 3's <start_of_image> becomes <|image|>). Paths
point into the two tasks' folders, relative to the new files. Speech records first, then shapes,
each in its own file order. Deterministic: rerunning it rewrites the same files.

usage: tools/make_media4_task.py [DATASETS_DIR]
"""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "datasets"
out_dir = os.path.join(root, "media4")
os.makedirs(out_dir, exist_ok=True)
for split in ("train", "eval"):
    rows = []
    for line in open(os.path.join(root, "speech", f"{split}.jsonl"), encoding="utf-8"):
        o = json.loads(line)
        o["audio"] = ["../speech/" + p for p in o["audio"]]
        rows.append(o)
    for line in open(os.path.join(root, "shapes", f"{split}.jsonl"), encoding="utf-8"):
        o = json.loads(line)
        o["prompt"] = o["prompt"].replace("<start_of_image>", "<|image|>")
        o["images"] = ["../shapes/" + p for p in o["images"]]
        rows.append(o)
    with open(os.path.join(out_dir, f"{split}.jsonl"), "w", encoding="utf-8") as f:
        for o in rows:
            f.write(json.dumps(o, ensure_ascii=False) + "\n")
    print(f"{out_dir}/{split}.jsonl: {len(rows)} records")
