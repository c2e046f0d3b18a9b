"""Style-transfer quality evidence: the settings grid, the docs gallery and the 1024 px
coarse-to-fine run (`python benchmarks/style.py grid | gallery | compose | large`)."""

from __future__ import annotations

import resource

from PIL import Image
from style_common import DOCS, contents, grid, label, save_jpeg, speckle, style_paths, transfer
from style_report import save_results

COMPARISONS = {
    # name: run_transfer options (on top of size/steps); tv_weight None = the --tv value
    "raw features": dict(features="raw", tv_weight=0.0),
    "raw + TV": dict(features="raw", tv_weight=None),
    "avgpool, no TV": dict(features="avgpool", tv_weight=0.0),
    "avgpool + TV (default)": dict(features="avgpool", tv_weight=None),
    "coarse-to-fine, 2 scales": dict(scales=2),
    "preact + avgpool": dict(features="preact"),
    "no reflect pad": dict(pad=0),
    "L-BFGS": dict(optimizer="lbfgs"),
    "init noise (Adam)": dict(init="noise"),
    "init noise, L-BFGS, beta 3": dict(init="noise", optimizer="lbfgs", style_weight=3.0),
    "init content+noise": dict(init="content+noise"),
    "preserve colours": dict(preserve_colors=True),
}


def compare(args) -> None:
    import skimage.data as D

    from convlens.images import load_image

    content = D.chelsea()
    style = load_image(style_paths()["starry_night"])
    tiles, rows = [], []
    for name, kw in COMPARISONS.items():
        kw = dict(kw)
        if "tv_weight" in kw and kw["tv_weight"] is None:
            kw["tv_weight"] = args.tv
        r = transfer(content, style, args.grid_size, args.steps, threads=args.threads[0], **kw)
        last = r.history[-1]
        row = {
            "setting": name,
            "options": kw,
            "seconds": round(r.seconds, 1),
            "content_cost": last["content"],
            "style_cost": last["style"],
            "speckle": round(speckle(r.image), 3),
        }
        print(row, flush=True)
        rows.append(row)
        tiles.append(label(r.image, name))
    photo = Image.fromarray(content).resize(tiles[0].size, Image.LANCZOS)
    tiles.append(label(photo, f"content photo (speckle {speckle(photo):.2f})"))
    per_row = 4
    save_jpeg(
        grid([tiles[i : i + per_row] for i in range(0, len(tiles), per_row)]),
        DOCS / "compare_settings.jpg",
    )
    save_results({"compare": {"size": args.grid_size, "steps": args.steps, "rows": rows}})


def gallery(args) -> None:
    styles = style_paths()
    rows, report = [], []
    for cname, img in contents().items():
        row = []
        thumb = Image.fromarray(img)
        thumb.thumbnail((args.size, args.size))
        row.append(label(thumb, cname))
        for sname, spath in styles.items():
            r = transfer(
                img,
                spath,
                args.size,
                args.steps,
                threads=args.threads[0],
                tv_weight=args.tv,
                scales=args.scales,
            )
            save_jpeg(r.image, DOCS / f"{cname}_{sname}.jpg", max_kb=250)
            report.append(
                {
                    "content": cname,
                    "style": sname,
                    "seconds": round(r.seconds, 1),
                    "speckle": round(speckle(r.image), 3),
                }
            )
            print(report[-1], flush=True)
            small = r.image.copy()
            small.thumbnail((256, 256))
            row.append(small)
        rows.append(row)
    compose_gallery()
    save_results(
        {
            "gallery": {
                "size": args.size,
                "steps": args.steps,
                "tv": args.tv,
                "scales": args.scales,
                "runs": report,
            }
        }
    )


def compose_gallery(args=None) -> None:
    """docs/style/gallery.jpg from the per-image files: paintings on top, one photo per row."""
    styles = style_paths()
    header = [Image.new("RGB", (256, 64), "white")]
    for sname, spath in styles.items():
        s = Image.open(spath).convert("RGB")
        s.thumbnail((256, 180))
        header.append(label(s, sname))
    rows = [header]
    for cname, img in contents().items():
        photo = Image.fromarray(img)
        photo.thumbnail((256, 256))
        row = [label(photo, cname)]
        for sname in styles:
            out = Image.open(DOCS / f"{cname}_{sname}.jpg").convert("RGB")
            out.thumbnail((256, 256))
            row.append(out)
        rows.append(row)
    save_jpeg(grid(rows), DOCS / "gallery.jpg")


def large(args) -> None:
    import skimage.data as D

    r = transfer(
        D.astronaut(),
        style_paths()["great_wave"],
        1024,
        args.large_steps,
        scales=3,
        tv_weight=args.tv,
        threads=args.threads[0],
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    save_jpeg(r.image, DOCS / "astronaut_great_wave_1024.jpg", max_kb=300)
    row = {
        "size": 1024,
        "scales": 3,
        "sizes": r.sizes,
        "steps_coarsest": args.large_steps,
        "seconds": round(r.seconds, 1),
        "peak_rss_gib": round(peak / 2**30, 2),
        "estimated_gib": round(r.estimated_bytes / 2**30, 2),
    }
    print(row, flush=True)
    save_results({"large": row})
