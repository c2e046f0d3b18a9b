"""`convlens faces encode` and `export-onnx`."""

from __future__ import annotations

import json

import pytest

from convlens.cli import main


def _run(capsys, *argv) -> tuple[int, str]:
    code = main(["faces", *map(str, argv)])
    return code, capsys.readouterr().out


def test_encode_json_one_line_per_image(capsys, photos_dir, tmp_path):
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (64, 48), (120, 120, 120)).save(blank)
    code, out = _run(capsys, "encode", "--json", photos_dir / "two_people.jpg", blank)
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in lines] == [str(photos_dir / "two_people.jpg"), str(blank)]
    people, nobody = lines
    assert people["error"] is None and len(people["faces"]) == 2
    face = people["faces"][0]
    assert len(face["box"]) == 4 and isinstance(face["score"], float)
    assert len(face["embedding"]) == 128
    assert nobody == {"path": str(blank), "faces": [], "error": None}


def test_encode_goes_on_past_unreadable_files(capsys, photos_dir, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    code, out = _run(
        capsys, "encode", "--json", bad, tmp_path / "missing.png", photos_dir / "obama_small.jpg"
    )
    assert code == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 3
    assert "bad.jpg" in rows[0]["error"] and rows[0]["faces"] == []
    assert "no such file" in rows[1]["error"]
    assert rows[2]["error"] is None and len(rows[2]["faces"]) == 1


def test_encode_table(capsys, photos_dir, orl_dir):
    code, out = _run(
        capsys, "encode", "--detector", "auto", "--upsample", "2", "--min-face", "0.1",
        photos_dir / "obama_small.jpg", orl_dir / "s1" / "1.pgm",
    )  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert "box" in lines[0] and len(lines) == 3
    assert "obama_small.jpg" in lines[1] and "(128-d)" in lines[1]


def test_bad_detector_is_a_usage_error(photos_dir):
    with pytest.raises(SystemExit):
        main(["faces", "encode", "--detector", "haar", str(photos_dir / "obama.jpg")])


def test_export_onnx(capsys, tmp_path):
    pytest.importorskip("convlens.models.onnx_export")
    pytest.importorskip("onnx")
    out = tmp_path / "enc.onnx"
    code, text = _run(capsys, "export-onnx", out)
    assert code == 0 and out.stat().st_size > 1_000_000 and str(out) in text
