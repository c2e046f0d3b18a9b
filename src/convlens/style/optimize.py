"""Neural style transfer (Gatys et al. 2015) by optimising the pixels of the generated image G:

    J(G) = alpha * J_content(C, G) / n_content + beta * J_style(S, G) + tv * J_tv(G)

J_content and J_style are the costs of `convlens.style.losses`. The content cost is divided by
its number of elements (n_content) so that one alpha/beta balance works at every image size
(J_style is already size-independent). Style targets are position-normalised Gram matrices, so
style and content images may differ in size; several style images blend as a weighted sum of
their Grams.

Pixels live in [0, 1] (clamped after each step). Targets (content features, style Grams) are
computed once per scale without autograd; the backbone runs only up to the deepest layer used.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from convlens.errors import ConvlensError
from convlens.images import ImageInput, load_image
from convlens.models.devices import resolve_device
from convlens.style.features import FeatureExtractor, backbones, load_backbone, presets
from convlens.style.losses import normalized_gram, style_cost_from_grams, total_variation

MIN_SIDE = 16
OPTIMIZERS = ("adam", "lbfgs")
INITS = ("content", "noise", "content+noise")


@dataclass
class StyleOptions:
    """Every knob of `transfer`; the defaults are the settings used for the docs gallery."""

    size: int = 512  # long side of the output, pixels
    steps: int = 300  # iterations at the coarsest scale (each finer scale gets steps // 2)
    optimizer: str = "adam"  # adam | lbfgs
    lr: float = 0.02  # Adam learning rate on [0, 1] pixels
    init: str = "content"  # content | noise | content+noise
    noise_ratio: float = 0.3  # share of noise in "content+noise"
    content_weight: float = 1.0  # alpha
    style_weight: float | None = None  # beta (default: the layer preset's)
    tv_weight: float = 300.0  # total-variation weight (removes fine colour speckle)
    style_weights: list[float] | None = None  # blend weights, one per style image
    features: str = (
        "avgpool"  # layer preset: avgpool | raw | preact (the backbone's registry entry)
    )
    content_layers: list[str] | None = None  # override the preset's content layers
    style_layers: list[str] | None = None  # override the preset's style layers
    layer_weights: list[float] | None = None  # lambda_l per style layer (default: equal, sum 1)
    avgpool: bool | None = None  # strided conv -> avg pool (default: the preset's choice)
    preserve_colors: bool = False  # luminance-only transfer, photo colours kept
    style_scale: float = 1.0  # style image size relative to the output (bigger = bigger strokes)
    scales: int = 1  # coarse-to-fine pyramid levels (each level doubles the size)
    seed: int = 0
    frames: str | os.PathLike | None = None  # folder for intermediate PNG frames
    gif: str | os.PathLike | None = None  # animated GIF of the optimisation
    frame_every: int = 0  # steps between frames (0: about 30 frames per scale)
    backbone: str = "efficientnet-lite0"  # efficientnet-lite0 | vgg19
    vgg_weights: str | os.PathLike | None = None
    device: str = "cpu"
    amp: bool = False  # bfloat16 autocast for the backbone (CUDA)
    compile: bool | str = False  # torch.compile the loss (a mode string: "reduce-overhead"
    # uses CUDA graphs on GPU); off by default: it does not pay on CPU (benchmarks/style.py)
    channels_last: bool = True
    pad: int = 16  # reflect-pad the image by this many pixels before the network (edge seams)
    fold_bn: bool = True
    threads: int | None = None  # CPU threads (default: torch's, all cores)
    progress: bool = True
    max_memory_fraction: float = 0.8  # refuse sizes whose estimate exceeds this share


@dataclass
class StyleResult:
    image: Image.Image
    history: list[dict] = field(default_factory=list)  # per logged step: scale, step, terms
    seconds: float = 0.0
    sizes: list[tuple[int, int]] = field(default_factory=list)
    estimated_bytes: int = 0


# ---------------------------------------------------------------- validation


def _check_options(o: StyleOptions, n_styles: int) -> None:
    if o.optimizer not in OPTIMIZERS:
        raise ConvlensError(
            f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {o.optimizer!r}"
        )
    if o.init not in INITS:
        raise ConvlensError(f"init must be one of {', '.join(INITS)}, not {o.init!r}")
    if o.backbone not in backbones():
        raise ConvlensError(f"backbone must be one of {', '.join(backbones())}, not {o.backbone!r}")
    if o.features not in presets(o.backbone):
        raise ConvlensError(f"features must be one of {', '.join(presets(o.backbone))}")
    if o.size < MIN_SIDE:
        raise ConvlensError(f"size {o.size} is below the {MIN_SIDE} px minimum")
    if o.steps < 1:
        raise ConvlensError("steps must be at least 1")
    if o.scales < 1 or o.size / 2 ** (o.scales - 1) < 2 * MIN_SIDE:
        raise ConvlensError(
            f"{o.scales} scales from {o.size} px would start below {2 * MIN_SIDE} px"
        )
    if not 0.05 <= o.style_scale <= 20:
        raise ConvlensError(f"style scale {o.style_scale} outside 0.05..20")
    for name in ("content_weight", "style_weight", "tv_weight", "lr"):
        value = getattr(o, name)
        if value is not None and (not math.isfinite(value) or value < 0):
            raise ConvlensError(f"{name} must be a finite number >= 0")
    if o.style_weights is not None:
        if len(o.style_weights) != n_styles:
            raise ConvlensError(
                f"{len(o.style_weights)} style weights for {n_styles} style image(s)"
            )
        if any(w < 0 for w in o.style_weights) or sum(o.style_weights) <= 0:
            raise ConvlensError("style weights must be >= 0 with a positive sum")
    resolve_device(o.device)
    if o.pad < 0:
        raise ConvlensError("pad must be >= 0")


def _load_checked(source: ImageInput, what: str) -> np.ndarray:
    img = load_image(source)
    h, w = img.shape[:2]
    if min(h, w) < MIN_SIDE:
        label = source if isinstance(source, str | os.PathLike) else what
        raise ConvlensError(f"{label}: {w}x{h} image is too small (minimum {MIN_SIDE} px a side)")
    return img


# ---------------------------------------------------------------- image helpers


def _to_tensor(img: np.ndarray, device) -> torch.Tensor:
    return (
        torch.from_numpy(np.array(img, copy=True))
        .permute(2, 0, 1)[None]
        .float()
        .div(255)
        .to(device)
    )


def _resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == hw:
        return x
    # antialias only when shrinking (bilinear otherwise)
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True).clamp(
        0, 1
    )


def _fit(h: int, w: int, long_side: int) -> tuple[int, int]:
    s = long_side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


_RGB2YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)


def _yiq(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", _RGB2YIQ.to(x), x)


def _rgb(yiq: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_RGB2YIQ).to(yiq), yiq).clamp(0, 1)


def _match_luminance(y_style: torch.Tensor, y_content: torch.Tensor) -> torch.Tensor:
    """Shift/scale the style luminance to the content's mean and spread (Gatys et al. 2016)."""
    ys = (y_style - y_style.mean()) / (y_style.std() + 1e-6)
    return (ys * y_content.std() + y_content.mean()).clamp(0, 1)


def to_pil(x: torch.Tensor) -> Image.Image:
    arr = x[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5
    return Image.fromarray(arr.astype(np.uint8))


# ---------------------------------------------------------------- memory estimate


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def _probe_bytes_per_pixel(extractor: FeatureExtractor, channels_last: bool) -> float:
    """Bytes autograd keeps per input pixel for one forward of the extractor, measured on a
    small CPU probe (saved tensors + tapped outputs), deduplicated by storage."""
    side = 64
    x = torch.rand(1, 3, side, side, requires_grad=True)
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    ext = extractor.cpu()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outs = ext(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
    total = sum(seen.values()) + sum(o.numel() * o.element_size() for o in outs)
    return total / (side * side)


def estimate_bytes(extractor: FeatureExtractor, h: int, w: int, o: StyleOptions) -> int:
    """Peak memory estimate for optimising an h x w image: autograd state (x2 for gradients and
    transient buffers), plus image-sized optimiser state and the weights."""
    per_pixel = _probe_bytes_per_pixel(extractor, o.channels_last)
    if o.amp:
        per_pixel /= 2
    weights = sum(p.numel() * p.element_size() for p in extractor.parameters())
    history = 50 * 2 if o.optimizer == "lbfgs" else 4
    h, w = h + 2 * o.pad, w + 2 * o.pad
    return int(2.0 * per_pixel * h * w + history * 3 * 4 * h * w + 2 * weights + (256 << 20))


# ---------------------------------------------------------------- main entry


def transfer(content: ImageInput, style, **options) -> Image.Image:
    """Stylise `content` with `style` (a path/PIL/array, or a list of them); returns a PIL image.

    Options are the fields of `StyleOptions`.
    """
    return run_transfer(content, style, **options).image


def run_transfer(content: ImageInput, style, **options) -> StyleResult:
    known = {f.name for f in fields(StyleOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConvlensError(f"unknown style option(s): {', '.join(unknown)}")
    o = StyleOptions(**options)
    styles = list(style) if isinstance(style, list | tuple) else [style]
    if not styles:
        raise ConvlensError("at least one style image is needed")
    _check_options(o, len(styles))

    content_img = _load_checked(content, "content image")
    style_imgs = [_load_checked(s, f"style image {i + 1}") for i, s in enumerate(styles)]
    device = resolve_device(o.device)
    blend = np.asarray(o.style_weights or [1.0] * len(styles), dtype=np.float64)
    blend = (blend / blend.sum()).tolist()

    preset = presets(o.backbone)[o.features]
    if o.style_weight is None:
        o.style_weight = preset.style_weight
    if o.threads:
        torch.set_num_threads(o.threads)
    content_layers = list(o.content_layers or preset.content)
    style_layers = list(o.style_layers or preset.style)
    if not style_layers and o.style_weight > 0:
        raise ConvlensError("no style layers given")
    lam = o.layer_weights or [1.0 / max(len(style_layers), 1)] * len(style_layers)
    if len(lam) != len(style_layers):
        raise ConvlensError(f"{len(lam)} layer weights for {len(style_layers)} style layers")
    avgpool = preset.avgpool if o.avgpool is None else o.avgpool

    backbone = load_backbone(o.backbone, o.vgg_weights)
    extractor = FeatureExtractor(backbone, content_layers + style_layers, o.fold_bn, avgpool)
    n_content = len(content_layers)

    # sizes, coarse to fine
    h0, w0 = content_img.shape[:2]
    final = _fit(h0, w0, o.size)
    sizes = [_fit(h0, w0, max(MIN_SIDE, round(o.size / 2**k))) for k in range(o.scales - 1, -1, -1)]
    sizes[-1] = final
    needed = estimate_bytes(extractor, *final, o)
    available = _available_bytes(device)
    if needed > o.max_memory_fraction * available:
        raise ConvlensError(
            f"a {final[1]}x{final[0]} output needs about {needed / 2**30:.1f} GiB but only "
            f"{available / 2**30:.1f} GiB is available on {device}; use a smaller --size"
        )

    extractor = extractor.to(device)
    if o.channels_last:
        extractor = extractor.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(o.seed)
    torch.manual_seed(o.seed)

    content_full = _to_tensor(content_img, "cpu")
    styles_full = [_to_tensor(s, "cpu") for s in style_imgs]
    result = StyleResult(image=None, sizes=sizes, estimated_bytes=needed)  # type: ignore[arg-type]
    frames: list[Image.Image] = []
    frame_dir = Path(o.frames) if o.frames else None
    if frame_dir:
        frame_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    x = None
    for level, hw in enumerate(sizes):
        c = _resize(content_full, hw).to(device)
        c_yiq = _yiq(c) if o.preserve_colors else None
        s_list = []
        for s in styles_full:
            area = hw[0] * hw[1] * o.style_scale**2
            k = math.sqrt(area / (s.shape[-2] * s.shape[-1]))
            shw = (max(MIN_SIDE, round(s.shape[-2] * k)), max(MIN_SIDE, round(s.shape[-1] * k)))
            s = _resize(s, shw).to(device)
            if o.preserve_colors:
                s = _match_luminance(_yiq(s)[:, :1], c_yiq[:, :1]).expand(-1, 3, -1, -1)
            s_list.append(s)
        net_c = c_yiq[:, :1].expand(-1, 3, -1, -1) if o.preserve_colors else c
        targets = _targets(extractor, net_c, s_list, blend, n_content, o)

        # the variable: RGB, or luminance only
        if x is None:
            x = _initial(net_c[:, :1] if o.preserve_colors else c, o, gen)
        else:
            x = F.interpolate(x, size=hw, mode="bicubic", align_corners=False).clamp(0, 1)
        steps = o.steps if level == 0 else max(1, o.steps // 2)
        every = o.frame_every or max(1, steps // 30)

        def snapshot(v, step, level=level, c_yiq=c_yiq):
            img = _compose(v, c_yiq, o.preserve_colors)
            pil = to_pil(img)
            if frame_dir:
                pil.save(frame_dir / f"frame_s{level}_{step:05d}.png")
            if o.gif:
                frames.append(pil)

        x = _optimize(
            x,
            extractor,
            targets,
            lam,
            n_content,
            o,
            steps,
            level,
            hw,
            result,
            snapshot if (frame_dir or o.gif) else None,
            every,
        )
        final_img = _compose(x, c_yiq, o.preserve_colors)

    if device.type == "cuda":
        torch.cuda.synchronize()
    result.seconds = time.perf_counter() - t_start
    result.image = to_pil(final_img)
    if o.gif and frames:
        _write_gif(frames + [result.image], Path(o.gif), final)
    return result


def _compose(x: torch.Tensor, c_yiq: torch.Tensor | None, preserve: bool) -> torch.Tensor:
    if not preserve:
        return x
    return _rgb(torch.cat([x, c_yiq[:, 1:]], dim=1))


def _initial(c: torch.Tensor, o: StyleOptions, gen: torch.Generator) -> torch.Tensor:
    if o.init == "content":
        return c.clone()
    noise = torch.rand(c.shape, generator=gen).to(c)
    if o.init == "noise":
        return noise
    return ((1 - o.noise_ratio) * c + o.noise_ratio * noise).clamp(0, 1)


@torch.no_grad()
def _targets(extractor, content, styles, blend, n_content, o):
    """Content feature maps and blended, position-normalised style Grams (computed once)."""
    mf = torch.channels_last if o.channels_last else torch.contiguous_format
    with _autocast(o):
        feats = extractor(_pad(content, o.pad).contiguous(memory_format=mf))
        content_t = [f.float() for f in feats[:n_content]]
        grams = None
        for s, w in zip(styles, blend, strict=True):
            fs = extractor(s.contiguous(memory_format=mf))[n_content:]
            g = [w * normalized_gram(f.float()) for f in fs]
            grams = g if grams is None else [a + b for a, b in zip(grams, g, strict=True)]
    return content_t, grams


def _pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Mirror the image's edges outwards so that the network's zero padding is not where the
    optimised pixels are (removes bright/dark seams along the border)."""
    if pad <= 0:
        return x
    p = min(pad, x.shape[-1] - 1, x.shape[-2] - 1)
    return F.pad(x, (p, p, p, p), mode="reflect")


def _autocast(o: StyleOptions):
    if o.amp:
        return torch.autocast(device_type=torch.device(o.device).type, dtype=torch.bfloat16)
    return torch.autocast(device_type="cpu", enabled=False)


def make_loss(extractor, targets, lam, n_content, o: StyleOptions):
    """loss(x) -> (J, terms) with terms = stack(content, style, tv), unweighted."""
    content_t, grams = targets
    mf = torch.channels_last if o.channels_last else torch.contiguous_format
    alpha, beta, tv_w = o.content_weight, o.style_weight, o.tv_weight
    luminance = o.preserve_colors

    def loss(x: torch.Tensor):
        inp = _pad(x.expand(-1, 3, -1, -1) if luminance else x, o.pad)
        with _autocast(o):
            feats = extractor(inp.contiguous(memory_format=mf))
        jc = x.new_zeros(())
        for f, t in zip(feats[:n_content], content_t, strict=True):
            jc = jc + 0.5 * (f.float() - t).pow(2).sum() / t.numel()
        js = x.new_zeros(())
        for f, g, w in zip(feats[n_content:], grams, lam, strict=True):
            js = js + w * style_cost_from_grams(g, normalized_gram(f.float()))
        jtv = total_variation(x) if tv_w > 0 else x.new_zeros(())
        total = alpha * jc + beta * js + tv_w * jtv
        return total, torch.stack([jc.detach(), js.detach(), jtv.detach()])

    if o.compile:
        mode = o.compile if isinstance(o.compile, str) else None
        loss = torch.compile(loss, mode=mode, dynamic=False)
    return loss


def _optimize(x, extractor, targets, lam, n_content, o, steps, level, hw, result, snapshot, every):
    from convlens.progress import ProgressBar

    loss_fn = make_loss(extractor, targets, lam, n_content, o)
    x = x.detach().clone().requires_grad_(True)
    log_every = 10
    desc = f"style {hw[1]}x{hw[0]}" + (f" ({level + 1}/{o.scales})" if o.scales > 1 else "")
    with ProgressBar(desc, steps, unit="it", disable=not o.progress) as bar:

        def log(step, terms, total):
            t = terms.tolist()
            total = float(total.detach())
            result.history.append(
                {
                    "scale": level,
                    "step": step,
                    "total": total,
                    "content": t[0],
                    "style": t[1],
                    "tv": t[2],
                }
            )
            return f"J {total:.3g} content {t[0]:.3g} style {t[1]:.3g} tv {t[2]:.2g}"

        if o.optimizer == "adam":
            opt = torch.optim.Adam([x], lr=o.lr)
            for step in range(steps):
                opt.zero_grad(set_to_none=True)
                total, terms = loss_fn(x)
                total.backward()
                opt.step()
                with torch.no_grad():
                    x.clamp_(0, 1)
                info = (
                    log(step, terms, total) if step % log_every == 0 or step == steps - 1 else None
                )
                bar.advance(1, info)
                if snapshot and step % every == 0:
                    snapshot(x.detach(), step)
        else:
            opt = torch.optim.LBFGS(
                [x],
                lr=1.0,
                max_iter=20,
                history_size=50,
                line_search_fn="strong_wolfe",
                tolerance_grad=0.0,
                tolerance_change=0.0,
            )
            evals = 0

            def closure():
                nonlocal evals
                opt.zero_grad(set_to_none=True)
                total, terms = loss_fn(x)
                total.backward()
                last = evals == steps - 1
                info = log(evals, terms, total) if evals % log_every == 0 or last else None
                if snapshot and evals % every == 0:
                    snapshot(x.detach().clamp(0, 1), evals)
                evals += 1
                bar.advance(1, info)
                return total

            while evals < steps:
                left = steps - evals
                opt.param_groups[0]["max_iter"] = min(20, left)
                opt.param_groups[0]["max_eval"] = left
                before = evals
                opt.step(closure)
                with torch.no_grad():
                    x.clamp_(0, 1)
                if evals == before:  # converged: nothing left to do
                    break
    return x.detach()


def _write_gif(frames: list[Image.Image], path: Path, final_hw: tuple[int, int]) -> None:
    h, w = final_hw
    scale = min(1.0, 384 / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    imgs = [f.resize(size, Image.LANCZOS) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    durations = [120] * (len(imgs) - 1) + [2000]  # hold the result
    imgs[0].save(
        path, save_all=True, append_images=imgs[1:], duration=durations, loop=0, optimize=True
    )
