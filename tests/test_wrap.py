"""vizlib.models.wrap: an engineer's own network gets the course's door (normalisation, named
layers, class names) and runs through every entry point, while the network itself stays as it was."""
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vizlib import attribution as A
from vizlib import models, policy
from vizlib import render as R
from vizlib import style, style_losses
from vizlib.activations import layer_activations
from vizlib.hooks import capture_activations
from conftest import ModelState

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def own_net(classes: int = 4) -> nn.Module:
    """A small classifier of the kind an engineer brings: nested Sequentials, a head module."""
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(
        features=nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(8, 12, 3, padding=1, stride=2), nn.ReLU()),
            nn.Sequential(nn.Conv2d(12, 16, 3, padding=1), nn.ReLU()),
        ),
        pool=nn.AdaptiveAvgPool2d(1),
        head=nn.Sequential(nn.Flatten(), nn.Linear(16, classes)),
    ))
    return net.eval()


@pytest.fixture
def images():
    return torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(1))  # not square


def test_the_door_normalises_with_the_given_mean_and_std(images):
    net = own_net()
    model = models.wrap(net, mean=MEAN, std=STD)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(images), net((images - mean) / std), rtol=0, atol=1e-6)
        default = models.wrap(net)(images)
        imagenet = (images - torch.tensor(policy.IMAGENET_MEAN).view(1, 3, 1, 1)) / \
            torch.tensor(policy.IMAGENET_STD).view(1, 3, 1, 1)
        torch.testing.assert_close(default, net(imagenet), rtol=0, atol=1e-6)


def test_a_custom_net_runs_through_every_entry_point(images):
    net = own_net()
    before = ModelState(net)
    model = models.wrap(net, classes=["cat", "dog", "cow", "owl"], name="mine")
    assert model.net is net and model.name == "mine" and model.source == "custom"
    assert model.net.head[1].weight is net.head[1].weight             # shared, not copied
    assert not model.training and model.input_size == 224
    assert model.layer_names == ["features.0.0", "features.0.1", "features.0", "features.1.0",
                                 "features.1.1", "features.1", "features.2.0", "features.2.1",
                                 "features.2", "features", "avgpool", "head.0", "head.1", "head"]
    assert model.layer("avgpool") is net.pool and model.layer("features.1.0") is net.features[1][0]

    sal = A.saliency(model, images)
    assert sal.shape == (2, 24, 40) and bool(torch.isfinite(sal).all())
    assert A.default_cam_layer(model) == "features" == A.default_cam_layer(net)
    cam = A.grad_cam(model, images, target=1)
    assert cam.shape == (2, 24, 40)
    torch.testing.assert_close(cam, A.grad_cam(model, images, target=1, layer="features"))
    assert A.cam(model, images).shape == (2, 24, 40)

    top = models.predict(model, images, k=4)
    assert [sorted(c for c, _ in row) for row in top] == [["cat", "cow", "dog", "owl"]] * 2
    with torch.no_grad():
        best = model(images).argmax(1).tolist()
    assert [row[0][0] for row in top] == [model.classes[i] for i in best]
    indices = models.predict(models.wrap(net), images, k=2)
    assert [row[0][0] for row in indices] == best and all(isinstance(c, int) for row in indices for c, _ in row)

    acts = layer_activations(model, images, ["features.0", "features.2.1", "avgpool"])
    assert [tuple(a.shape) for a in acts.values()] == [(2, 8, 24, 40), (2, 16, 12, 20), (2, 16, 1, 1)]

    assert style_losses.default_style_layers(model) == ["features.0.1", "features.1.1", "features.2.1"]
    assert style_losses.default_content_layer(model) == "features.1.1"
    out = style.style_transfer(model, images[:1], images[1:], steps=2, optimizer="adam",
                               precision="float32", progress=False)
    assert out.image.shape == (1, 3, 24, 40)
    drawn = R.render(model, R.class_score(2), R.PixelImage(shape=(24, 40), seed=0), steps=3, lr=0.05,
                     progress=False)
    assert drawn.image.shape == (1, 3, 24, 40)
    before.assert_unchanged()


def test_given_layer_names_are_used_and_the_cam_layer_follows_avgpool(images):
    net = own_net()
    model = models.wrap(net, layers={"block1": "features.0", "relu2": "features.1.1",
                                     "block3": "features.2", "avgpool": "pool", "fc": "head.1"})
    assert model.layer_names == ["block1", "relu2", "block3", "avgpool", "fc"]
    assert model.layer("block3") is net.features[2] and model.layer_paths["fc"] == "net.head.1"
    assert A.default_cam_layer(model) == "block3"
    assert layer_activations(model, images, "relu2")["relu2"].shape == (2, 12, 12, 20)
    assert style_losses.default_style_layers(model) == ["relu2"]        # relu* names: vizlib.style's own rule


def test_a_torchvision_resnet_gets_the_course_names_and_pytorch_grad_cams_layer():
    """Default CAM layer ``layer4``: the output of ``layer4[-1]``, pytorch-grad-cam's choice for a
    ResNet; the wrapped model's map is the plain network's on normalised images."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).double().eval()
    before = ModelState(net)
    model = models.wrap(net, classes=[f"c{i}" for i in range(1000)])
    assert model.layer_paths["layer4"] == "net.layer4" and model.layer_paths["relu1"] == "net.relu"
    assert A.default_cam_layer(model) == "layer4" == A.default_cam_layer(net)
    x = torch.rand(2, 3, 64, 80, dtype=torch.float64)
    t = torch.tensor([3, 7])
    mean = torch.tensor(policy.IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(policy.IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    normalised = (x - mean) / std
    with torch.enable_grad(), capture_activations(net, net.layer4[-1], detach=False) as acts:
        score = net(normalised.clone().requires_grad_(True)).gather(1, t[:, None]).sum()
        a = acts[net.layer4[-1]]
        (g,) = torch.autograd.grad(score, a)
    by_hand = F.relu((g.mean((2, 3), keepdim=True) * a).sum(1)).detach()
    torch.testing.assert_close(A.grad_cam(model, x, t, upsample=False), by_hand)
    before.assert_unchanged()

    gc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with gc.GradCAM(model=net, target_layers=[net.layer4[-1]]) as c:
        theirs = torch.from_numpy(c(input_tensor=normalised.clone().requires_grad_(True),
                                    targets=[ClassifierOutputTarget(int(i)) for i in t])).double()

    def scale(m):  # pytorch-grad-cam's min-max scaling, before and after its bilinear resize
        m = m - m.flatten(1).amin(1)[:, None, None]
        return m / (1e-7 + m.flatten(1).amax(1)[:, None, None])
    ours = scale(F.interpolate(scale(by_hand)[:, None], size=(64, 80), mode="bilinear",
                               align_corners=False)[:, 0])
    assert float((ours - theirs).abs().max()) < 1e-5


def test_the_network_is_not_changed_in_mode_flags_or_hooks(images):
    net = own_net()
    net.features[0][0].weight.requires_grad_(False)      # a partly frozen net keeps its flags
    net.train()
    before = ModelState(net)
    model = models.wrap(net)
    assert model.training and model.normalize.training
    with pytest.raises(ValueError, match="needs the model in eval mode.*model.eval"):
        A.saliency(model, images)
    before.assert_unchanged()
    net.eval()
    before = ModelState(net)
    model = models.wrap(net)
    A.grad_cam(model, images)
    A.integrated_gradients(model, images, steps=4, progress=False)
    before.assert_unchanged()
    assert all(p.grad is None for p in net.parameters())


def test_float64_and_other_devices_are_left_where_they_are(images):
    net = own_net().double()
    model = models.wrap(net)
    assert model.normalize.mean.dtype == torch.float32                    # the door casts per call
    assert model(images.double()).dtype == torch.float64
    with pytest.raises(ValueError, match="float32 but the model's weights are torch.float64"):
        model(images)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_network_on_the_gpu_stays_there_and_the_door_follows_it(images):
    net = own_net().cuda()
    model = models.wrap(net, mean=MEAN, std=STD)
    assert next(net.parameters()).device.type == "cuda" and model.normalize.mean.device.type == "cuda"
    out = model(images)                                                   # CPU images in, CPU logits out
    assert out.device.type == "cpu"
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = net(((images - mean) / std).cuda()).cpu()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert A.grad_cam(model, images).device.type == "cpu"


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(layers={"block": "features.3"}),
     ValueError, r"layer 'block' -> 'features.3' is not a module of Sequential .*did you mean 'features\.\d'"),
    (dict(layers={"fc": "head.l"}), ValueError, r"did you mean .*'head.1'"),
    (dict(layers={"whole": ""}), ValueError, r"layer 'whole' -> '' is not a module"),
    (dict(layers=["features.0"]), TypeError, r"layers must be a dict \{name: module path\}"),
    (dict(layers={"block": 3}), TypeError, r"layer 'block' must map to a module path"),
    (dict(mean=(0.5, 0.5)), ValueError, r"mean must be 3 numbers, one per RGB channel; got 2"),
    (dict(std=0.5), ValueError, r"std must be 3 numbers"),
    (dict(std=(0.2, 0.0, 0.2)), ValueError, r"std must be positive in every channel"),
    (dict(mean="imagenet"), TypeError, r"mean must be 3 numbers"),
    (dict(classes="cat dog cow owl"), TypeError, r"classes must be a list or tuple of class names"),
    (dict(classes=[0, 1, 2, 3]), TypeError, r"classes must be class names \(str\); got int 0"),
    (dict(classes=["cat", "dog"]), ValueError,
     r"2 class names for Sequential, whose last layer 'head.1' \(nn.Linear\) has 4 outputs"),
    (dict(input_size=0), ValueError, r"input_size must be a positive int"),
    (dict(name=7), TypeError, r"name must be a non-empty str"),
])
def test_bad_arguments_are_refused_in_one_line(kwargs, error, message):
    net = own_net()
    before = ModelState(net)
    with pytest.raises(error, match=message) as info:
        models.wrap(net, **kwargs)
    assert "\n" not in str(info.value) and str(info.value).startswith("wrap: ")
    before.assert_unchanged()


def test_what_is_not_a_network_is_refused():
    with pytest.raises(TypeError, match=r"^wrap: net must be a torch.nn.Module, got function$"):
        models.wrap(lambda x: x)
    course = models.load_model("shapesnet", device="cpu")
    with pytest.raises(ValueError, match="already a CourseModel"):
        models.wrap(course)
    again = models.wrap(course.net, mean=policy.IMAGENET_MEAN)        # its network, unwrapped
    assert again.layer_names == course.layer_names
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), course(x))
