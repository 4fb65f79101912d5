"""Small networks with the operators of rembg's model families, exported the way the real files were made.

- ``DeformNet``: BiRefNet's DeformableConv2d (offset_conv, modulator_conv, regular_conv; mask = 2*sigmoid), exported
  with deform-conv2d-onnx-exporter (``register_deform_conv2d_exporter``) by the legacy TorchScript exporter.
- ``SwinNet``: a Swin-v1 stage as in BiRefNet's backbone (pad to the window, cyclic shift with torch.roll, window
  partition, relative position bias from a table, attention mask, LayerNorm, GELU MLP, patch merging).
- ``TwiceNet``: a backbone run twice, on the image and on a half-size copy, as BiRefNet runs its Swin backbone (one
  set of initializers in the file, read by two sets of nodes).
- ``SamLikeDecoder``: the operators segment_anything's SamOnnxModel exports (point embedding with Sin/Cos/MatMul,
  Equal/Where/Cast, one_hot, repeat_interleave, attention, ConvTranspose + LayerNorm2d, best-mask selection with
  ArgMax/Flatten/Gather, mask Resize to the model size and to ``orig_im_size``).

``export`` writes any of them with ``torch.onnx.export(..., opset_version=17, dynamo=False)``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn

OPSET = 17


def register_deform_conv2d_exporter() -> None:
    """deform-conv2d-onnx-exporter 1.2.0's symbolic, on torch versions whose torch.onnx moved its private helpers.

    The exporter reads ``torch.onnx._type_utils.JitScalarType`` and ``symbolic_helper._get_tensor_dim_size``; since
    torch 2.9 both live in ``torch.onnx._internal.torchscript_exporter`` (the public ``symbolic_helper`` re-exports
    only its public names), so point the exporter at that module when its own imports came up empty.
    """
    import deform_conv2d_onnx_exporter as exporter
    import torchvision  # noqa: F401  (imported here: importing it first inside a trace fails)

    if exporter.JitScalarType is None:
        try:
            from torch.onnx._internal.torchscript_exporter import _type_utils, symbolic_helper
        except ImportError:  # torch < 2.9: the exporter's own imports work
            pass
        else:
            exporter.JitScalarType = _type_utils.JitScalarType
            exporter.sym_help = symbolic_helper
    exporter.register_deform_conv2d_onnx_op()


def export(net: nn.Module, args: Sequence[torch.Tensor], path: Path, input_names: Sequence[str],
           output_names: Sequence[str], dynamic_axes: Dict = None) -> Path:
    """The legacy (TorchScript) ONNX export at opset 17, as BiRefNet's and SAM's exporters do it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), tuple(args), str(path), opset_version=OPSET, dynamo=False,
                          do_constant_folding=True, input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes=dynamic_axes)
    return path


# --------------------------------------------------------------------------------------------------------------
# BiRefNet: models/modules/deform_conv.py


class DeformableConv2d(nn.Module):
    """BiRefNet's DeformableConv2d (modulator mask = 2*sigmoid), generalised for the tests' parameter sweep."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False, dilation=1,
                 offset_groups=1, groups=1, use_mask=True):
        super().__init__()
        k = kernel_size
        self.stride = (stride, stride)
        self.padding = padding
        self.dilation = (dilation, dilation)
        self.use_mask = use_mask
        self.offset_conv = nn.Conv2d(in_channels, 2 * offset_groups * k * k, k, stride, padding,
                                     dilation=dilation, bias=True)
        self.modulator_conv = nn.Conv2d(in_channels, offset_groups * k * k, k, stride, padding,
                                        dilation=dilation, bias=True)
        self.regular_conv = nn.Conv2d(in_channels, out_channels, k, stride, padding, dilation=dilation,
                                      groups=groups, bias=bias)
        with torch.no_grad():  # BiRefNet zero-initialises offsets; trained ones are not zero: make them move
            self.offset_conv.weight.mul_(4.0)
            self.offset_conv.bias.uniform_(-2.0, 2.0)

    def forward(self, x):
        import torchvision

        offset = self.offset_conv(x)
        modulator = 2.0 * torch.sigmoid(self.modulator_conv(x)) if self.use_mask else None
        return torchvision.ops.deform_conv2d(input=x, offset=offset, weight=self.regular_conv.weight,
                                             bias=self.regular_conv.bias, padding=self.padding, mask=modulator,
                                             stride=self.stride, dilation=self.dilation)


class DeformNet(nn.Module):
    """Deformable convolutions with kernels 1, 3 and 7, padding k//2 and stride 1, as in BiRefNet's ASPPDeformable."""

    def __init__(self, channels: int = 4, width: int = 8):
        super().__init__()
        self.k1 = DeformableConv2d(channels, width, 1, padding=0)
        self.k3 = DeformableConv2d(width, width, 3, padding=1, bias=True)
        self.k7 = DeformableConv2d(width, channels, 7, padding=3)

    def forward(self, x):
        x = torch.relu(self.k1(x))
        x = torch.relu(self.k3(x))
        return self.k7(x)


# --------------------------------------------------------------------------------------------------------------
# BiRefNet's Swin-v1 backbone (models/backbones/swin_v1.py), one small stage


def window_partition(x, window):
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window, window, c)


def window_reverse(windows, window, h, w):
    b = int(windows.shape[0] / (h * w / window / window))
    x = windows.view(b, h // window, w // window, window, window, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, -1)


class WindowAttention(nn.Module):
    def __init__(self, dim, window, heads):
        super().__init__()
        self.window = window
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads) * 0.5)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
        relative[:, :, 0] += window - 1
        relative[:, :, 1] += window - 1
        relative[:, :, 0] *= 2 * window - 1
        self.register_buffer("relative_position_index", relative.sum(-1))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.view(b // windows, windows, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.heads, n, n)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class SwinBlock(nn.Module):
    def __init__(self, dim, heads, window, shift):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x, h, w, mask):
        b, _, c = x.shape
        ws = self.window
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        pad_r, pad_b = (ws - w % ws) % ws, (ws - h % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        _, hp, wp, _ = x.shape
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = self.attn(window_partition(x, ws).view(-1, ws * ws, c), mask if self.shift else None)
        x = window_reverse(windows.view(-1, ws, ws, c), ws, hp, wp)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x[:, :h, :w, :].contiguous().view(b, h * w, c)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class SwinNet(nn.Module):
    """Patch embedding, a (regular, shifted) pair of Swin blocks, patch merging; NCHW in and out."""

    def __init__(self, dim: int = 16, heads: int = 2, window: int = 4):
        super().__init__()
        self.window = window
        self.shift = window // 2
        self.patch = nn.Conv2d(3, dim, 2, stride=2)
        self.blocks = nn.ModuleList([SwinBlock(dim, heads, window, 0), SwinBlock(dim, heads, window, self.shift)])
        self.merge_norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def attention_mask(self, x, h, w):
        ws, s = self.window, self.shift
        hp, wp = int(math.ceil(h / ws)) * ws, int(math.ceil(w / ws)) * ws
        img_mask = torch.zeros((1, hp, wp, 1), device=x.device)
        count = 0
        for hs in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
            for wsl in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
                img_mask[:, hs, wsl, :] = count
                count += 1
        windows = window_partition(img_mask, ws).view(-1, ws * ws)
        mask = windows.unsqueeze(1) - windows.unsqueeze(2)
        return mask.masked_fill(mask != 0, float(-100.0)).masked_fill(mask == 0, float(0.0))

    def forward(self, image):
        x = self.patch(image)
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        mask = self.attention_mask(x, h, w)
        for block in self.blocks:
            x = block(x, h, w, mask)
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2, :], x[:, 1::2, 0::2, :], x[:, 0::2, 1::2, :], x[:, 1::2, 1::2, :]], -1)
        x = self.reduction(self.merge_norm(x.view(b, -1, 4 * c)))
        return x.view(b, h // 2, w // 2, 2 * c).permute(0, 3, 1, 2).contiguous()


class TwiceNet(nn.Module):
    """Conv + BatchNorm + grouped Conv, token Linear + LayerNorm (MatMul/Add on 3-D tokens), run on the image and on
    a half-size copy; the two feature maps are joined by a 1x1 Conv head."""

    def __init__(self, channels: int = 8):
        super().__init__()
        c = channels
        self.backbone = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                      nn.Conv2d(c, c, 3, padding=1, groups=2))
        self.token = nn.Linear(c, c)
        self.norm = nn.LayerNorm(c)
        self.head = nn.Conv2d(2 * c, 1, 1)
        with torch.no_grad():  # trained statistics, not the identity
            self.backbone[1].running_mean.uniform_(-0.5, 0.5)
            self.backbone[1].running_var.uniform_(0.5, 2.0)

    def features(self, x):
        f = self.backbone(x)
        b, c, h, w = f.shape
        tokens = self.norm(self.token(f.flatten(2).transpose(1, 2)))
        return tokens.transpose(1, 2).reshape(b, c, h, w)

    def forward(self, image):
        full = self.features(image)
        half = F.interpolate(image, scale_factor=0.5, mode="bilinear", align_corners=False)
        half = F.interpolate(self.features(half), size=full.shape[2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(self.head(torch.cat([full, half], 1)))


# --------------------------------------------------------------------------------------------------------------
# segment_anything's SamOnnxModel (prompt encoder + mask decoder + postprocessing), with its operators


class LayerNorm2d(nn.Module):
    def __init__(self, channels, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels) + 0.1 * torch.randn(channels))
        self.bias = nn.Parameter(0.1 * torch.randn(channels))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class SamLikeDecoder(nn.Module):
    def __init__(self, dim: int = 16, image_size: int = 64, embedding_size: int = 8, masks: int = 4):
        super().__init__()
        self.image_size = image_size
        self.masks = masks
        self.register_buffer("gaussian", torch.randn(2, dim // 2))
        self.not_a_point = nn.Embedding(1, dim)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(4))
        self.label_table = nn.Parameter(torch.randn(5, dim))
        self.mask_tokens = nn.Embedding(masks, dim)
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.heads = 2
        self.norm = nn.LayerNorm(dim)
        self.upscale = nn.ConvTranspose2d(dim, dim // 4, 2, stride=2)
        self.upscale_norm = LayerNorm2d(dim // 4)
        self.hyper = nn.Linear(dim, dim // 4)
        self.iou_head = nn.Linear(dim, masks)
        self.crop = (image_size * 3 // 4, image_size)  # SamOnnxModel's crop to the pre-padding size

    def embed_points(self, coords, labels):
        coords = (coords + 0.5) / self.image_size
        coords = (2 * coords - 1) @ self.gaussian
        coords = 2 * math.pi * coords
        pe = torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)
        labels = labels.unsqueeze(-1).expand_as(pe)
        pe = pe * (labels != -1)
        pe = torch.where(labels == -1, self.not_a_point.weight.expand_as(pe), pe)
        for i in range(4):
            pe = pe + self.point_embeddings[i].weight * (labels == i)
        return pe

    def attend(self, tokens, image):
        b, n, c = tokens.shape
        heads = self.heads

        def split(x):
            return x.reshape(x.shape[0], x.shape[1], heads, c // heads).transpose(1, 2)

        q, k, v = split(self.q(tokens)), split(self.k(image)), split(self.v(image))
        attn = torch.softmax(q @ k.permute(0, 1, 3, 2) / math.sqrt(c // heads), dim=-1)
        return self.o((attn @ v).transpose(1, 2).reshape(b, n, c))

    def forward(self, image_embeddings, point_coords, point_labels, orig_im_size):
        sparse = self.embed_points(point_coords, point_labels)
        hot = F.one_hot((point_labels.long() + 1).clamp(0, 4), 5).to(sparse.dtype)  # OneHot, Clip on int64
        sparse = sparse + hot @ self.label_table
        tokens = torch.cat([self.mask_tokens.weight.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse], dim=1)
        src = torch.repeat_interleave(image_embeddings, tokens.shape[0], dim=0)
        flat = src.flatten(2).permute(0, 2, 1)
        tokens = self.norm(tokens + self.attend(tokens, flat))
        up = F.gelu(self.upscale_norm(self.upscale(src)))
        hyper = self.hyper(tokens[:, : self.masks, :])
        b, c, h, w = up.shape
        masks = (hyper @ up.view(b, c, h * w)).view(b, -1, h, w)
        iou = self.iou_head(tokens[:, 0, :])
        # select_masks: reweighting by the number of points, then the best mask by advanced indexing
        reweight = torch.tensor([[1000] + [0] * (self.masks - 1)])
        score = iou + (point_coords.shape[1] - 2.5) * reweight
        best = torch.argmax(score, dim=1)
        masks = masks[torch.arange(masks.shape[0]), best, :, :].unsqueeze(1)
        iou = iou[torch.arange(masks.shape[0]), best].unsqueeze(1)
        # mask_postprocessing
        masks = F.interpolate(masks, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        masks = masks[..., : self.crop[0], : self.crop[1]]
        orig = orig_im_size.to(torch.int64)
        masks = F.interpolate(masks, size=(orig[0], orig[1]), mode="bilinear", align_corners=False)
        return masks, iou
