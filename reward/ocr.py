"""OCR rewards: real PP-OCR recognition models on CPU (ONNX Runtime), Flow-GRPO's formula.

    kind          model                                   package (weights inside the wheel)
    ocr           PP-OCRv4 recognition (ch_PP-OCRv4_rec)  rapidocr_onnxruntime 1.4
    ocr_heldout   PP-OCRv6 small recognition              rapidocr 3.x (its newest shipped)

The target is the text between the prompt's first pair of double quotes, as in Flow-GRPO
(`prompt.split('"')[1]`, flow_grpo/ocr.py). Per image, with spaces removed and lower-cased:

    read    = the recognised line
    dist    = 0 if target in read else Levenshtein(read, target)
    reward  = 1 − min(dist, len(target)) / len(target)             (flow_grpo/ocr.py OcrScorer)

`ocr_likelihood` (a training reward, not Flow-GRPO's): the same PP-OCRv4 model's probability of
the target itself, dense where the formula above is a step function of the argmax read:

    ll      = −CTC_NLL(target | per-column softmax) / len(target)    nats per character
    reward  = 1 + max(ll, −FLOOR) / FLOOR                             FLOOR = 10 nats

the log-probability that the recogniser emits exactly the target (every CTC alignment counted,
blank = class 0; a letter's two cases are one class) per character, floored and mapped to [0, 1].
It rises as a glyph gets closer to right, before the read flips (renders of the right text score
0.93-0.99, with one character wrong 0.3-0.7, a blank canvas about 0.5, other text 0: unlike the
formula above, a blank canvas is not the worst). Log scale on purpose: the probability itself is
≈ 0 as soon as one character is wrong.

Detection (`detect`): Flow-GRPO runs PaddleOCR's detector and recogniser on the whole image and
joins the texts of the lines it finds (flow_grpo/ocr.py: `''.join(...)` over `ocr.ocr(img)`'s
lines, in the package's top-to-bottom, left-to-right order; lines read with confidence < 0.5
are dropped, PaddleOCR's and RapidOCR's `text_score`). `ocr` and `ocr_heldout` do the same with
the package's own detector (PP-OCRv4 det / PP-OCRv6 small det, shipped in the same wheels) on
images taller than DETECT_ABOVE pixels, the real models' 512²-1024² images: without it a whole
512² image would be one recognition crop squeezed to 48 px high, which reads next to nothing (a
clear two-line "Hello World" sign scores 0.1 with PP-OCRv4, 0 with PP-OCRv6). Smaller images —
the embedded world's 32 × 64 single lines that fill the canvas, where a detector finds no box
margin — are one recognition crop each, resized to height 48 by the package's own preprocessing
and run in batches of `batch_size`. `detect: true / false` forces either path. `ocr_likelihood`
scores one crop only: it refuses images that need detection (use `ocr` there).

ONNX Runtime's intra-op threads are the actor's CPUs (`num_cpus` of the scorer, at least 1) and
inter-op threads 1, so a reward actor never spreads over cores Ray did not give it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def target_text(prompt: str) -> str:
    """The quoted text of a prompt (Flow-GRPO: prompt.split('"')[1]); ValueError if none."""
    parts = prompt.split('"')
    if len(parts) < 3 or not parts[1].strip():
        raise ValueError(
            f"OCR reward: prompt {prompt!r} names no text in double quotes; write it like "
            'a sign that says "k7pa" (the scorer reads the text between the first pair of quotes)'
        )
    return parts[1]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def ocr_reward(read: str, target: str) -> float:
    """Flow-GRPO's OCR reward of one recognised string (module docstring)."""
    read, target = read.replace(" ", "").lower(), target.replace(" ", "").lower()
    dist = 0 if target in read else edit_distance(read, target)
    return 1.0 - min(dist, len(target)) / len(target)


def _images(images: np.ndarray) -> list[np.ndarray]:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [B, H, W, 3], got {images.dtype} {images.shape}")
    return [np.ascontiguousarray(im[..., ::-1]) for im in images]  # RGB -> BGR, the packages' (cv2) order


LIKELIHOOD_FLOOR = 10.0  # nats per character: e^-10 ≈ 5e-5, far below any right glyph


def ctc_likelihood_reward(probs: np.ndarray, target: str, classes: dict[str, list[int]]) -> float:
    """1 + max(−CTC NLL / len(target), −FLOOR) / FLOOR of `target` under `probs` [T, C] (softmax
    per column, blank 0); `classes`: each character -> its columns (summed: both cases of a letter)."""
    import torch
    import torch.nn.functional as F

    missing = sorted({c for c in target if c not in classes})
    if missing:
        raise ValueError(f"OCR likelihood: the recogniser's character set has no {missing}")
    unique = sorted(set(target))
    merged = np.stack(
        [probs[:, 0]] + [probs[:, classes[c]].sum(axis=1) for c in unique], axis=1
    )  # [T, 1 + len(unique)]
    log_probs = torch.from_numpy(np.log(np.clip(merged, 1e-30, None))).double()[:, None, :]  # [T, 1, K]
    labels = torch.tensor([[1 + unique.index(c) for c in target]])
    nll = F.ctc_loss(
        log_probs,
        labels,
        torch.tensor([merged.shape[0]]),
        torch.tensor([len(target)]),
        blank=0,
        reduction="sum",
        zero_infinity=False,
    )
    return 1.0 + max(-float(nll) / len(target), -LIKELIHOOD_FLOOR) / LIKELIHOOD_FLOOR


DETECT_ABOVE = 96  # px of image height: taller images get text detection unless `detect` says otherwise
TEXT_SCORE = 0.5  # lines read with lower confidence are dropped (PaddleOCR drop_score, RapidOCR text_score)


class OCRScorer:
    """Base: `recognise(list of BGR uint8 crops) -> list of strings` is the model's part, and
    `detect_and_read(one BGR image) -> list of line texts` its detection path."""

    name = "ocr"
    detect: bool | None = None  # None: detect on images taller than DETECT_ABOVE

    @staticmethod
    def validate_prompts(prompts: list[str]) -> None:
        """Raise ValueError naming the first prompt without a quoted text (cheap: no model)."""
        for prompt in prompts:
            target_text(prompt)

    def detects(self, images: np.ndarray) -> bool:
        """Whether `read` runs the detector on these images (module docstring)."""
        return self.detect if self.detect is not None else images.shape[1] > DETECT_ABOVE

    def read(self, images: np.ndarray) -> list[str]:
        """The recognised text of each image (uint8 RGB [B, H, W, 3]): one crop's read, or the
        detected lines' reads joined."""
        if not len(images):
            return []
        crops = _images(images)
        if self.detects(images):
            return ["".join(self.detect_and_read(c)) for c in crops]
        return list(self.recognise(crops))

    def score(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images")
        targets = [target_text(p) for p in prompts]
        return np.array([ocr_reward(r, t) for r, t in zip(self.read(images), targets)], dtype=np.float32)

    def recognise(self, crops: list[np.ndarray]) -> list[str]:
        raise NotImplementedError

    def detect_and_read(self, image: np.ndarray) -> list[str]:
        raise NotImplementedError


class PPOCRv4Scorer(OCRScorer):
    """PP-OCRv4 recognition from `rapidocr_onnxruntime` (the trained-on OCR reward), behind its
    PP-OCRv4 detector for large images."""

    def __init__(self, batch_size: int = 64, threads: int = 1, detect: bool | None = None):
        import rapidocr_onnxruntime
        from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer

        self.detect, self.threads, self.pipeline = detect, threads, None
        model = Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_rec_infer.onnx"
        self.model = TextRecognizer(
            {
                "model_path": str(model),
                "rec_img_shape": [3, 48, 320],
                "rec_batch_num": batch_size,
                "intra_op_num_threads": threads,
                "inter_op_num_threads": 1,
                "use_cuda": False,
            }
        )

    def recognise(self, crops: list[np.ndarray]) -> list[str]:
        results, _ = self.model(crops)
        return [text for text, _confidence in results]

    def detect_and_read(self, image: np.ndarray) -> list[str]:
        if self.pipeline is None:  # the package's det + rec pipeline, sharing our recogniser
            from rapidocr_onnxruntime import RapidOCR

            self.pipeline = RapidOCR(intra_op_num_threads=self.threads, inter_op_num_threads=1)
            self.pipeline.text_rec = self.model
        lines, _ = self.pipeline(image, use_det=True, use_cls=False, use_rec=True, text_score=TEXT_SCORE)
        return [text for _box, text, _confidence in lines or []]


class PPOCRv4LikelihoodScorer(PPOCRv4Scorer):
    """PP-OCRv4's probability of the target (`ocr_likelihood`, module docstring)."""

    name = "ocr_likelihood"

    def __init__(self, batch_size: int = 64, threads: int = 1, detect: bool | None = None):
        super().__init__(batch_size, threads, detect=detect)  # detect: true is refused by `score`
        chars = self.model.postprocess_op.character  # index 0 is CTC's blank
        self.classes: dict[str, list[int]] = {}
        for i, ch in enumerate(chars[1:], 1):
            if len(ch) == 1:
                self.classes.setdefault(ch.lower(), []).append(i)

    def score(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images")
        if self.detects(images):
            raise ValueError(
                f"reward scorer kind ocr_likelihood reads each image as one text line, but these images "
                f"are {images.shape[1]} × {images.shape[2]} (taller than {DETECT_ABOVE} px: text somewhere "
                "in a scene); use kind ocr, which finds the lines first (Flow-GRPO's path), or set "
                "detect: false if every image is one line that fills it"
            )
        targets = [target_text(p).replace(" ", "").lower() for p in prompts]
        crops, rec, out = _images(images), self.model, []
        _, height, width = rec.rec_image_shape
        for start in range(0, len(crops), rec.rec_batch_num):
            part = crops[start : start + rec.rec_batch_num]
            ratio = max(width / height, *(c.shape[1] / c.shape[0] for c in part))  # the package's padding
            batch = np.concatenate([rec.resize_norm_img(c, ratio)[None] for c in part]).astype(np.float32)
            probs = rec.session(batch)[0]  # [b, T, C] softmax
            out += [ctc_likelihood_reward(p, t, self.classes) for p, t in zip(probs, targets[start:])]
        return np.array(out, dtype=np.float32)


class PPOCRv6Scorer(OCRScorer):
    """PP-OCRv6 small recognition from `rapidocr` 3.x (the held-out judge)."""

    name = "ocr_heldout"

    def __init__(self, batch_size: int = 64, threads: int = 1, detect: bool | None = None):
        import rapidocr
        from rapidocr import ModelType, OCRVersion, RapidOCR

        self.detect = detect
        models = Path(rapidocr.__file__).parent / "models"
        self.engine = RapidOCR(  # models load on first use: the detector only if an image needs it
            params={
                "Global.use_det": False,
                "Global.use_cls": False,
                "Global.log_level": "warning",
                "Global.text_score": TEXT_SCORE,
                "Det.ocr_version": OCRVersion.PPOCRV6,
                "Det.model_type": ModelType.SMALL,
                "Det.model_path": str(models / "PP-OCRv6_det_small.onnx"),
                "Rec.ocr_version": OCRVersion.PPOCRV6,
                "Rec.model_type": ModelType.SMALL,
                "Rec.model_path": str(models / "PP-OCRv6_rec_small.onnx"),
                "Rec.rec_batch_num": batch_size,
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            }
        )

    def recognise(self, crops: list[np.ndarray]) -> list[str]:
        return list(self.engine.recognize_txt(crops).txts)

    def detect_and_read(self, image: np.ndarray) -> list[str]:
        out = self.engine(image, use_det=True, use_cls=False, use_rec=True)
        return list(out.txts or ())
