"""`raygrpo embed`: where the cache goes, and what it holds."""

import json

from orchestrator.__main__ import main


def test_embed_needs_a_destination(capsys):
    assert main(["embed", "--config", "deploy/configs/tiny.yaml", "--prompts", "tiny:heldout"]) == 2
    assert "give --out DIR, or set model.embeddings" in capsys.readouterr().err


def test_embed_tiny_writes_train_eval_and_extra_prompts(tmp_path):
    extra = tmp_path / "extra.txt"
    extra.write_text("a red circle at the top left on a blue background\n")
    assert (
        main(
            [
                "embed",
                "--config",
                "deploy/configs/tiny.yaml",
                "--prompts",
                str(extra),
                "--out",
                str(tmp_path / "emb"),
            ]
        )
        == 0
    )
    index = json.loads((tmp_path / "emb" / "index.json").read_text())
    assert index["kind"] == "tiny" and index["fields"] == ["pooled", "prompt_embeds"]
    # 405 train + 45 held-out prompts + the (empty) negative prompt; the extra one is a train prompt
    assert len(index["prompts"]) == 405 + 45 + 1
