"""vizlib.attribution: exact maps on hand-weighted nets, agreement with Captum and
pytorch-grad-cam, CAM = Grad-CAM on a global-average-pool net, batching, targets, autocast,
and no side effects on the model or the input — also when a call raises midway."""
import copy
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vizlib import attribution as A
from vizlib import shapes
from vizlib.hooks import hook_count, relu_backward_rule
from conftest import ModelState

# every method of the registry, and the CAM variants that are not in it (the lectures' explorers
# offer the registry)
EVERY = {**A.METHODS, "xgrad_cam": A.xgrad_cam, "layer_cam": A.layer_cam}

# settings that keep every method fast on 64-px ShapesNet images
FAST = {"occlusion": dict(patch=16, stride=16), "smoothgrad": dict(samples=4),
        "integrated_gradients": dict(steps=8)}


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


@pytest.fixture(scope="module")
def shapesnet64(shapesnet):
    return copy.deepcopy(shapesnet).double()


@pytest.fixture(scope="module")
def batch():
    return shapes.make_batch(3, 64, seed=1)


# ----------------------------------------------------------------------------------------
# Exact maps on a hand-weighted network
# ----------------------------------------------------------------------------------------

def hand_net():
    """1x1 conv: channel 0 = R - B, channel 1 = G; ReLU; global average pool; fc.

    Class 0's score is mean_p [2 relu(R - B) - G]_p: every pixel contributes on its own, so
    every method's answer can be written down by hand.
    """
    net = nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, 2, 1, bias=False), relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1),
        flat=nn.Flatten(), fc=nn.Linear(2, 2, bias=False)))
    with torch.no_grad():
        net.conv.weight.copy_(torch.tensor([[1.0, 0, -1], [0, 1, 0]]).view(2, 3, 1, 1))
        net.fc.weight.copy_(torch.tensor([[2.0, -1.0], [0.5, 2.0]]))
    return net.double().eval()


@pytest.fixture
def hand():
    x = torch.tensor([[[0.9, 0.2], [0.5, 0.1]],      # R
                      [[0.3, 0.0], [0.6, 0.4]],      # G
                      [[0.1, 0.7], [0.5, 0.0]]],     # B
                     dtype=torch.float64)[None]
    r, g, b = x[0]
    n = 4
    on = (r > b).double()                            # where relu(R - B) is active
    contribution = 2 * (r - b).clamp(min=0) - g       # per-pixel part of class 0's score x n
    return hand_net(), x, on, contribution, n


def test_saliency_and_relu_rules_exact(hand):
    net, x, on, _, n = hand
    # plain gradient: |dS/dR| = |dS/dB| = 2/n where R > B, |dS/dG| = 1/n where G > 0 (the
    # G channel's ReLU is off at the pixel with G = 0)
    g_on = (x[0, 1] > 0).double()
    torch.testing.assert_close(A.saliency(net, x, 0)[0], torch.maximum(2.0 / n * on, 1.0 / n * g_on))
    # guided: the fc sends -1/n into the G channel's ReLU: a negative gradient, stopped
    torch.testing.assert_close(A.guided_backprop(net, x, 0)[0], 2.0 / n * on)
    # deconvnet: the positive 2/n passes the R - B ReLU even where it was off
    torch.testing.assert_close(A.deconvnet(net, x, 0)[0], torch.full((2, 2), 2.0 / n, dtype=torch.float64))
    grads = A.input_gradients(net, x, 0, rule="guided")[0]
    torch.testing.assert_close(grads, torch.stack([2 / n * on, 0 * on, -2 / n * on]))
    torch.testing.assert_close(A.input_gradients(net, x, 0)[0],
                               torch.stack([2 / n * on, -1 / n * g_on, -2 / n * on]))


def test_occlusion_cam_gradcam_ig_exact(hand):
    net, x, on, contribution, n = hand
    # occluding one pixel with black removes exactly its contribution (relu(0) = 0, G = 0)
    torch.testing.assert_close(A.occlusion(net, x, 0, patch=1, stride=1, fill=0.0)[0], contribution / n)
    torch.testing.assert_close(A.cam(net, x, 0, relu=False, upsample=False)[0], contribution)
    torch.testing.assert_close(A.grad_cam(net, x, 0, layer="relu", relu=False, upsample=False)[0],
                               contribution / n)
    torch.testing.assert_close(A.grad_cam(net, x, 0, layer="relu", upsample=False)[0],
                               contribution.clamp(min=0) / n)
    # along the straight path each pixel's score part is linear in alpha: IG is exact
    torch.testing.assert_close(A.integrated_gradients(net, x, 0, steps=3)[0], contribution / n)
    # Grad-CAM++: g = 2/n on channel 0 and -1/n on channel 1 (weight 0); by eq. 19
    # alpha = 1 / (2 + 2 S/n) with S = sum relu(R - B), weight = n * alpha * 2/n = 1 / (1 + S/n)
    act = (x[0, 0] - x[0, 2]).clamp(min=0)
    torch.testing.assert_close(A.grad_cam_pp(net, x, 0, layer="relu", upsample=False)[0],
                               act / (1 + act.sum() / n))


def test_occlusion_windows_and_scores(hand):
    net, x, _, contribution, n = hand
    clean = float(net(x)[0, 0])
    # a 1x2 strip... patch 2 covers the whole 2x2 image once: score = 0 (all black)
    scores = A.occlusion_scores(net, x, 0, patch=2, fill=0.0)
    assert scores.shape == (1, 1, 1) and float(scores) == pytest.approx(0.0)
    # patch 1: each position removes one pixel's part
    scores = A.occlusion_scores(net, x, 0, patch=1, fill=0.0)
    torch.testing.assert_close(scores[0], clean - contribution / n)
    # the last window hangs over the edge and is clipped: every pixel is covered
    masks, nh, nw = A._windows(10, 10, 4, 3, "cpu")
    assert (nh, nw) == (3, 3) and bool(masks.any(0).all())


def test_occlusion_ignores_pixels_the_model_ignores():
    """A model that only looks at the left half: occluding the right half changes nothing."""
    class LeftHalf(nn.Module):
        def forward(self, x):
            return torch.stack([x[:, 0, :, :4].mean((1, 2)), x[:, 1, :, :4].mean((1, 2))], 1)

    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    heat = A.occlusion(LeftHalf().eval(), x, 0, patch=2, stride=2, fill=0.5)
    assert float(heat[:, :, 4:].abs().max()) == 0.0
    assert float(heat[:, :, :4].abs().max()) > 0.0


# ----------------------------------------------------------------------------------------
# Independent implementations
# ----------------------------------------------------------------------------------------

def test_gradient_methods_match_captum(shapesnet64, batch):
    captum = pytest.importorskip("captum.attr")
    m, x, t = shapesnet64, batch["images"].double(), batch["labels"]
    # Captum's Saliency(abs=True) is per-channel |grad|: the taught map is its max over channels
    assert rel_err(A.saliency(m, x, t), captum.Saliency(m).attribute(x.clone(), target=t).amax(1)) < 1e-5
    gb = captum.GuidedBackprop(m).attribute(x.clone(), target=t)
    assert rel_err(A.guided_backprop(m, x, t), gb.abs().amax(1)) < 1e-5
    assert rel_err(A.input_gradients(m, x, t, rule="guided"), gb) < 1e-5
    dc = captum.Deconvolution(m).attribute(x.clone(), target=t)
    assert rel_err(A.deconvnet(m, x, t), dc.abs().amax(1)) < 1e-5
    # IntegratedGradients returns per-channel attributions: ours is their sum over channels
    ig = captum.IntegratedGradients(m).attribute(x.clone(), target=t, n_steps=20)
    assert rel_err(A.integrated_gradients(m, x, t, steps=20), ig.sum(1)) < 1e-5
    ig = captum.IntegratedGradients(m).attribute(x.clone(), target=t, n_steps=10, method="riemann_middle",
                                                 baselines=0.5)
    assert rel_err(A.integrated_gradients(m, x, t, steps=10, method="riemann_middle", baseline=0.5),
                   ig.sum(1)) < 1e-5


def test_occlusion_and_layer_gradcam_match_captum(shapesnet64, batch):
    captum = pytest.importorskip("captum.attr")
    m, x, t = shapesnet64, batch["images"].double(), batch["labels"]
    # Captum occludes a (3, p, p) window with a scalar baseline and gives every channel the
    # same value (it returns float32, hence the relative 1e-5)
    oc = captum.Occlusion(m).attribute(x.clone(), target=t, sliding_window_shapes=(3, 14, 14),
                                       strides=(3, 10, 10), baselines=0.3, perturbations_per_eval=36)
    assert rel_err(A.occlusion(m, x, t, patch=14, stride=10, fill=0.3), oc[:, 0].double()) < 1e-5
    for layer in ("relu3", "conv4"):
        lg = captum.LayerGradCam(m, m.layer(layer)).attribute(x.clone(), target=t)[:, 0]
        assert rel_err(A.grad_cam(m, x, t, layer=layer, relu=False, upsample=False), lg) < 1e-5


def _as_pytorch_grad_cam(raw, size):
    """pytorch-grad-cam's post-processing of a ReLU'd layer-resolution cam: min-max scale
    (min subtracted, divided by max + 1e-7), resize to the input (cv2 bilinear, half-pixel
    centres = torch's align_corners=False) and min-max scale once more."""
    def scale(c):
        c = c - c.flatten(1).amin(1)[:, None, None]
        return c / (1e-7 + c.flatten(1).amax(1)[:, None, None])
    return scale(F.interpolate(scale(raw)[:, None], size=size, mode="bilinear", align_corners=False)[:, 0])


def _pytorch_grad_cam(cls, model, layer, x, t):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    with cls(model=model, target_layers=[model.layer(layer)]) as c:
        out = c(input_tensor=x.clone().requires_grad_(True),
                targets=[ClassifierOutputTarget(int(i)) for i in t])
    return torch.from_numpy(out).double()


# pytorch-grad-cam adds a small eps to Grad-CAM++'s (1e-6) and XGrad-CAM's (1e-7) denominators: pass the same
@pytest.mark.parametrize("ours, theirs, eps", [("grad_cam", "GradCAM", None), ("grad_cam_pp", "GradCAMPlusPlus", 1e-6),
                                               ("layer_cam", "LayerCAM", None), ("xgrad_cam", "XGradCAM", 1e-7)])
@pytest.mark.parametrize("layer", ["relu2", "relu3", "relu4"])
def test_every_cam_matches_pytorch_grad_cam(shapesnet64, batch, layer, ours, theirs, eps):
    gc = pytest.importorskip("pytorch_grad_cam")
    m, x, t = shapesnet64, batch["images"].double(), batch["labels"]
    kwargs = {} if eps is None else {"eps": eps}
    mine = _as_pytorch_grad_cam(getattr(A, ours)(m, x, t, layer=layer, upsample=False, **kwargs), (64, 64))
    assert rel_err(mine, _pytorch_grad_cam(getattr(gc, theirs), m, layer, x, t)) < 1e-5


def test_a_cam_variant_is_one_weights_function(hand, shapesnet64, batch):
    """The frame takes (B, C), (B, C, 1, 1) or (B, C, h, w) weights; the hand network's exact
    LayerCAM and XGrad-CAM maps; a dead channel (all activations 0) gets XGrad weight 0, not NaN."""
    net, x, on, contribution, n = hand
    act = (x[0, 0] - x[0, 2]).clamp(min=0)
    # class 0: dS/dA = 2/n on channel 0 and -1/n on channel 1, everywhere
    torch.testing.assert_close(A.layer_cam(net, x, 0, layer="relu", upsample=False)[0], 2 * act / n)
    torch.testing.assert_close(A.xgrad_cam(net, x, 0, layer="relu", relu=False, upsample=False)[0],
                               contribution / n)
    m, xs, t = shapesnet64, batch["images"].double(), batch["labels"]
    flat = A.gradient_cam(m, xs, t, weights=lambda a, g: g.mean(dim=(2, 3)), layer="relu3")
    assert torch.equal(flat, A.grad_cam(m, xs, t, layer="relu3"))
    a = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    a[:, 1] = 0
    w = A.xgrad_cam_weights(a, torch.randn(2, 3, 4, 4, dtype=torch.float64))
    assert w.shape == (2, 3, 1, 1) and bool(torch.isfinite(w).all()) and bool((w[:, 1] == 0).all())
    with pytest.raises(KeyError, match="relu4"):
        A.layer_cam(m, xs, t, layer="relu5")
    with pytest.raises(ValueError, match="training mode"):
        A.xgrad_cam(copy.deepcopy(m).train(), xs, t)


def test_default_cam_layer_of_a_plain_torchvision_resnet_is_pytorch_grad_cams(random_model):
    """A user's own torchvision ResNet (no course names): the default layer is ``layer4``, the same
    tensor as ``layer4[-1]`` that pytorch-grad-cam recommends, and the maps agree (float64)."""
    gc = pytest.importorskip("pytorch_grad_cam")
    import torchvision
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).double().eval()
    assert A.default_cam_layer(net) == "layer4"
    assert A.default_cam_layer(torchvision.models.vgg11(weights=None)) == "features"
    x = torch.rand(2, 3, 64, 80, dtype=torch.float64)
    t = torch.tensor([3, 7])
    ours = _as_pytorch_grad_cam(A.grad_cam(net, x, t, upsample=False), (64, 80))
    with gc.GradCAM(model=net, target_layers=[net.layer4[-1]]) as c:
        theirs = c(input_tensor=x.clone().requires_grad_(True), targets=[ClassifierOutputTarget(int(i)) for i in t])
    assert rel_err(ours, torch.from_numpy(theirs).double()) < 1e-5


def test_imagenet_architectures_match(random_model):
    """ResNet-18 (a ReLU module used twice per block) and SqueezeNet, random weights, float64."""
    captum = pytest.importorskip("captum.attr")
    gc = pytest.importorskip("pytorch_grad_cam")
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    resnet = copy.deepcopy(random_model("resnet18")).double()
    t = [1, 7]
    assert rel_err(A.saliency(resnet, x, t), captum.Saliency(resnet).attribute(x.clone(), target=t).amax(1)) < 1e-5
    lg = captum.LayerGradCam(resnet, resnet.layer("layer3")).attribute(x.clone(), target=t)[:, 0]
    assert rel_err(A.grad_cam(resnet, x, t, layer="layer3", relu=False, upsample=False), lg) < 1e-5
    ours = _as_pytorch_grad_cam(A.grad_cam(resnet, x, t, layer="layer4", upsample=False), (96, 96))
    assert rel_err(ours, _pytorch_grad_cam(gc.GradCAM, resnet, "layer4", x, t)) < 1e-5
    # ResNet is a global-average-pool network: CAM = h * w * Grad-CAM at layer4 (3 x 3)
    torch.testing.assert_close(A.cam(resnet, x, t, upsample=False),
                               9 * A.grad_cam(resnet, x, t, layer="layer4", upsample=False))
    squeeze = copy.deepcopy(random_model("squeezenet1_1")).double()
    gb = captum.GuidedBackprop(squeeze).attribute(x.clone(), target=t)
    assert rel_err(A.guided_backprop(squeeze, x, t), gb.abs().amax(1)) < 1e-5


def test_cam_equals_gradcam_on_a_gap_network(shapesnet64, batch):
    m, x = shapesnet64, batch["images"].double()
    # 64 px in, relu4 is 8 x 8: d logit / d A_k[y, x] = W[c, k] / 64, so Grad-CAM = CAM / 64
    for target in (None, 5, lambda z: z.softmax(1)[:, 2]):
        torch.testing.assert_close(A.cam(m, x, target, relu=False, upsample=False),
                                   64 * A.grad_cam(m, x, target, layer="relu4", relu=False, upsample=False))
    # and for a logit, the CAM weights are exactly the fc row
    feats = m.net.features(m.normalize(x))
    by_hand = torch.einsum("k,bkhw->bhw", m.net.fc.weight[3], feats)
    torch.testing.assert_close(A.cam(m, x, 3, relu=False, upsample=False), by_hand)


def test_guided_grad_cam_is_the_product(shapesnet64, batch):
    m, x, t = shapesnet64, batch["images"].double(), batch["labels"]
    torch.testing.assert_close(A.guided_grad_cam(m, x, t, layer="relu3"),
                               A.guided_backprop(m, x, t) * A.grad_cam(m, x, t, layer="relu3"))


def test_integrated_gradients_completeness(shapesnet64, batch):
    m, x, t = shapesnet64, batch["images"].double(), batch["labels"]
    ig = A.integrated_gradients(m, x, t, steps=64)
    gap = m(x).gather(1, t[:, None])[:, 0] - m(torch.zeros_like(x)).gather(1, t[:, None])[:, 0]
    # (max pools and ReLUs make the path integrand piecewise smooth: 64 nodes get within 1 %)
    torch.testing.assert_close(ig.sum((1, 2)), gap, rtol=2e-2, atol=1e-3)


def test_smoothgrad_noise_and_seed(shapesnet, batch):
    x, t = batch["images"], batch["labels"]
    torch.testing.assert_close(A.smoothgrad(shapesnet, x, t, samples=2, noise=0.0), A.saliency(shapesnet, x, t))
    a = A.smoothgrad(shapesnet, x, t, samples=3, seed=1)
    torch.testing.assert_close(a, A.smoothgrad(shapesnet, x, t, samples=3, seed=1, batch_size=2))
    assert float((a - A.smoothgrad(shapesnet, x, t, samples=3, seed=2)).abs().max()) > 0


# ----------------------------------------------------------------------------------------
# One calling convention: batches and targets
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(EVERY))
def test_batch_and_target_forms_agree(shapesnet64, batch, name):
    f, kw = EVERY[name], FAST.get(name, {})
    m, x = shapesnet64, batch["images"].double()
    top = m(x).argmax(1)
    whole = f(m, x, None, **kw)
    assert whole.shape == (3, 64, 64) and whole.dtype == torch.float64
    if name != "smoothgrad":  # (its noise is drawn for the whole batch at once)
        one_by_one = torch.cat([f(m, x[i:i + 1], int(top[i]), **kw) for i in range(3)])
        torch.testing.assert_close(whole, one_by_one)
    torch.testing.assert_close(whole, f(m, x, top.tolist(), **kw))
    same = f(m, x, 4, **kw)
    torch.testing.assert_close(same, f(m, x, torch.tensor([4, 4, 4]), **kw))
    # a callable scores each row of the logits on its own (perturbation methods call it on
    # batches of perturbed copies)
    torch.testing.assert_close(same, f(m, x, lambda z: z[:, 4], **kw))
    assert float((same - f(m, x, 6, **kw)).abs().max()) > 0, "another class gives another map"


def test_bad_inputs_say_what_is_wrong(shapesnet, batch, random_model):
    x = batch["images"]
    with pytest.raises(ValueError, match="out of range.*8 classes"):
        A.saliency(shapesnet, x, 8)
    with pytest.raises(ValueError, match="2 class indices for a batch of 3"):
        A.grad_cam(shapesnet, x, [1, 2])
    with pytest.raises(TypeError, match="integers"):
        A.saliency(shapesnet, x, [0.5, 1.0, 2.0])
    with pytest.raises(ValueError, match="one score per image"):
        A.saliency(shapesnet, x, lambda z: z.sum())
    with pytest.raises(KeyError, match="relu4"):
        A.grad_cam(shapesnet, x, 0, layer="relu5")
    with pytest.raises(ValueError, match="stride 9 is larger than patch 8"):
        A.occlusion(shapesnet, x, 0, patch=8, stride=9)
    with pytest.raises(ValueError, match="larger than the 64x64 image"):
        A.occlusion(shapesnet, x, 0, patch=65)
    with pytest.raises(ValueError, match="fill"):
        A.occlusion(shapesnet, x, 0, fill="grey")
    with pytest.raises(ValueError, match="global average pool"):
        A.cam(random_model("alexnet"), torch.rand(1, 3, 64, 64), 0)  # AlexNet pools to 6 x 6
    with pytest.raises(Exception, match="values in \\[0, 1\\]"):
        A.saliency(shapesnet, x * 255, 0)
    with pytest.raises(ValueError, match="unknown ReLU rule"):
        A.input_gradients(shapesnet, x, 0, rule="fancy")


# ----------------------------------------------------------------------------------------
# No side effects, also when a call raises midway
# ----------------------------------------------------------------------------------------

class Boom(nn.MaxPool2d):
    """pool3 of the test model: raises in the forward pass when armed."""
    armed = False

    def forward(self, x):
        if self.armed:
            raise RuntimeError("boom")
        return super().forward(x)


@pytest.fixture
def victim(random_model):
    """A ShapesNet whose state is easy to disturb: some weights require grad and hold a .grad,
    one ReLU is in-place, one submodule is in training mode, and pool3 can explode."""
    model = copy.deepcopy(random_model("shapesnet"))
    model.net.features.conv1.weight.requires_grad_(True)
    model.net.features.conv1.weight.grad = torch.full_like(model.net.features.conv1.weight, 0.5)
    model.net.fc.bias.requires_grad_(True)
    model.net.features.relu2.inplace = True
    model.net.features.pool3 = Boom(2)
    return model


@pytest.mark.parametrize("name", list(EVERY))
def test_no_side_effects_even_when_raising(victim, name):
    f, kw = EVERY[name], FAST.get(name, {})
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    before = ModelState(victim, x)
    assert hook_count(victim) == 0
    out = f(victim, x, 1, **kw)
    assert out.shape == (2, 64, 64) and bool(torch.isfinite(out).all())
    before.assert_unchanged(f"{name}, normal call")

    def bad_target(logits):
        raise RuntimeError("target failed")

    with pytest.raises(RuntimeError, match="target failed"):
        f(victim, x, bad_target, **kw)
    before.assert_unchanged(f"{name}, target raising")
    victim.net.features.pool3.armed = True
    with pytest.raises(RuntimeError, match="boom"):
        f(victim, x, 1, **kw)
    victim.net.features.pool3.armed = False
    before.assert_unchanged(f"{name}, layer raising")
    victim.train()
    with pytest.raises(ValueError, match="training mode"):
        f(victim, x, 1, **kw)
    victim.eval()


def test_relu_rule_context_restores_on_error(victim):
    with pytest.raises(RuntimeError, match="inside"):
        with relu_backward_rule(victim, "deconvnet"):
            assert hook_count(victim) == 4
            assert not victim.net.features.relu2.inplace
            raise RuntimeError("inside")
    assert hook_count(victim) == 0 and victim.net.features.relu2.inplace
    with pytest.raises(ValueError, match="no nn.ReLU"):
        with relu_backward_rule(nn.Sequential(nn.Conv2d(3, 1, 1))):
            pass


# ----------------------------------------------------------------------------------------
# Autocast and devices
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(EVERY))
def test_autocast_bfloat16_close_to_float32(shapesnet, batch, name):
    """Under CPU autocast (bfloat16: 8 bits of mantissa) every map is finite, float32, and
    within 25 % of the float32 map's largest value everywhere and at cosine similarity > 0.98
    (measured on these images: worst 14 % (saliency, deconvnet), lowest cosine 0.99)."""
    f, kw = EVERY[name], FAST.get(name, {})
    x, t = batch["images"], batch["labels"]
    ref = f(shapesnet, x, t, **kw)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = f(shapesnet, x, t, **kw)
    assert low.dtype == torch.float32 and bool(torch.isfinite(low).all())
    assert rel_err(low, ref) < 0.25
    cos = F.cosine_similarity(low.flatten(1), ref.flatten(1)).min()
    assert float(cos) > 0.98


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", list(EVERY))
def test_cuda_matches_cpu(shapesnet, batch, name):
    f, kw = EVERY[name], FAST.get(name, {})
    x, t = batch["images"], batch["labels"]
    gpu = copy.deepcopy(shapesnet).cuda()
    out = f(gpu, x.cuda(), t, **kw)
    assert out.device.type == "cuda"
    ref = f(shapesnet, x, t, **kw)
    assert rel_err(out.cpu(), ref) < 1e-3


# ----------------------------------------------------------------------------------------
# Lecture helpers: example images, figures, explorers
# ----------------------------------------------------------------------------------------

def test_a_long_occlusion_sweep_shows_progress_and_a_short_one_does_not(shapesnet64, batch, capsys):
    x, t = batch["images"][:1].double(), batch["labels"][:1]
    quiet = A.occlusion(shapesnet64, x, t, patch=8)                       # 64 windows: one pass
    assert "occlusion" not in capsys.readouterr().err
    shown = A.occlusion(shapesnet64, x, t, patch=8, batch_size=4)         # 16 passes
    err = capsys.readouterr().err
    assert "occlusion" in err and "/16 [" in err
    assert torch.equal(quiet, shown)
    A.occlusion(shapesnet64, x, t, patch=8, batch_size=4, progress=False)
    assert "occlusion" not in capsys.readouterr().err


@pytest.mark.parametrize("method, kwargs", [("smoothgrad", dict(samples=12, batch_size=1)),
                                            ("integrated_gradients", dict(steps=12, batch_size=1))])
def test_long_gradient_loops_show_progress(shapesnet64, batch, capsys, method, kwargs):
    x, t = batch["images"][:1].double(), batch["labels"][:1]
    fn = getattr(A, method)
    shown = fn(shapesnet64, x, t, **kwargs)                               # 12 passes
    assert f"{method}:" in capsys.readouterr().err
    quiet = fn(shapesnet64, x, t, **{**kwargs, "batch_size": 64})         # one pass
    assert method not in capsys.readouterr().err
    torch.testing.assert_close(shown, quiet)
