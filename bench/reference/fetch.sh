#!/usr/bin/env bash
# Check out the five reference repositories at the commits bench/reference/compare.py and
# docs/algorithms.md cite, outside the repo: bash bench/reference/fetch.sh [DIR, default ~/.cache/raygrpo/ref]
set -euo pipefail
DIR=${1:-$HOME/.cache/raygrpo/ref}
mkdir -p "$DIR"
while read -r name url commit; do
  [ -d "$DIR/$name/.git" ] || git clone -q "$url" "$DIR/$name"
  git -C "$DIR/$name" fetch -q origin "$commit" 2>/dev/null || true
  git -C "$DIR/$name" checkout -q "$commit"
  echo "$name $(git -C "$DIR/$name" rev-parse --short HEAD)"
done <<'LIST'
GCPO https://github.com/xingzhejun/GCPO ea6cc4d
VisualGRPO https://github.com/shengjun-zhang/VisualGRPO ae619bf
DanceGRPO https://github.com/XueZeyue/DanceGRPO 15cc71d
flow_grpo https://github.com/yifan123/flow_grpo ac4c86e
MixGRPO https://github.com/Tencent-Hunyuan/MixGRPO e5cdd6a
LIST
