#!/usr/bin/env bash
# The oracle's side venv (NOT the project venv; never committed): the official HPSv3 and
# ImageReward packages with the stack they need. ~7 GB (torch 2.14.1 is a CUDA build; it
# runs on CPU). Usage: bash bench/oracle/setup_venv.sh [VENV, default .venv-oracle in the repo]
set -euo pipefail
VENV=${1:-$(cd "$(dirname "$0")/../.." && pwd)/.venv-oracle}
python3 -m venv "$VENV"
PIP="$VENV/bin/pip install -q"
$PIP torch==2.14.1 torchvision==0.29.1
$PIP hpsv3==1.0.0 torch==2.14.1 torchvision==0.29.1       # pins transformers 4.45.2
# image-reward pins timm==0.6.13, which conflicts with hpsv3's timm>=0.9; its scoring path
# needs neither version's API that changed, so install it without its pins.
$PIP --no-deps image-reward==1.5 fairscale==0.4.13
# what the official packages import at module level but do not declare:
#   hpsv3: matplotlib, tensorboard; ImageReward: openai CLIP (`clip`, needs pkg_resources)
#   and a diffusers that still imports with transformers 4.45 (0.39 does not)
$PIP matplotlib tensorboard openai-clip "setuptools<81" diffusers==0.31.0
"$VENV/bin/python" -c "import hpsv3, ImageReward; print('oracle venv ready')"
