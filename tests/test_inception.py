"""The plain-torch InceptionV3 has pytorch-fid's state-dict layout, loads such a file, and maps images of any size to
(B, 2048) pool3 features. Structure only: no real weights ship here, so parity with pytorch-fid is not tested."""

import pytest
import torch
from torch.nn import functional as F

from torchdiffusion.metrics.inception import InceptionV3, load_inception


def expected_key_prefixes():
    """The module paths of pytorch-fid's FID InceptionV3, written out independently of the implementation."""
    stem = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
    a = ["branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3",
         "branch_pool"]
    b = ["branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"]
    c = ["branch1x1", "branch7x7_1", "branch7x7_2", "branch7x7_3", "branch7x7dbl_1", "branch7x7dbl_2",
         "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5", "branch_pool"]
    d = ["branch3x3_1", "branch3x3_2", "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"]
    e = ["branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1", "branch3x3dbl_2",
         "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"]
    blocks = {"Mixed_5b": a, "Mixed_5c": a, "Mixed_5d": a, "Mixed_6a": b, "Mixed_6b": c, "Mixed_6c": c,
              "Mixed_6d": c, "Mixed_6e": c, "Mixed_7a": d, "Mixed_7b": e, "Mixed_7c": e}
    return stem + [f"{blk}.{br}" for blk, branches in blocks.items() for br in branches]


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    n = InceptionV3().eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so a load that drops them would show
        for m in n.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return n


def test_state_dict_follows_pytorch_fid_names(net):
    keys = set(net.state_dict())
    convs = expected_key_prefixes()
    assert len(convs) == 94  # the conv layers of InceptionV3 without the auxiliary head
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    expected = {f"{p}.conv.weight" for p in convs} | {f"{p}.bn.{s}" for p in convs for s in bn} | {"fc.weight",
                                                                                                   "fc.bias"}
    assert keys == expected
    sd = net.state_dict()
    assert sd["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert sd["Mixed_6b.branch7x7_2.conv.weight"].shape == (128, 128, 1, 7)
    assert sd["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert sd["fc.weight"].shape == (1008, 2048) and sd["fc.bias"].shape == (1008,)


def test_a_saved_state_dict_loads_back(net, tmp_path):
    # pytorch-fid's file may predate BatchNorm's num_batches_tracked counters: save without them
    sd = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "pt_inception-2015-12-05-test.pth"
    torch.save(sd, path)
    loaded = load_inception(path)
    assert not any(p.is_meta for p in loaded.parameters()) and not loaded.training
    for k, v in sd.items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_wrong_files_are_refused(net, tmp_path):
    sd = dict(net.state_dict())
    sd.pop("Mixed_5b.branch1x1.conv.weight")
    sd["AuxLogits.fc.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="Mixed_5b.branch1x1.conv.weight"):
        load_inception(tmp_path / "bad.pth")
    sd = dict(net.state_dict())
    sd["fc.weight"] = torch.zeros(1000, 2048)
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match="fc.weight"):
        load_inception(tmp_path / "shape.pth")


def test_grayscale_28x28_is_repeated_resized_and_embedded(net):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 28, 28, generator=g) * 2 - 1
    pre = InceptionV3.preprocess(x)
    assert pre.shape == (2, 3, 299, 299)
    assert torch.equal(pre[:, 0], pre[:, 1]) and torch.equal(pre[:, 1], pre[:, 2])
    manual = F.interpolate(x.repeat(1, 3, 1, 1), size=(299, 299), mode="bilinear", align_corners=False)
    assert torch.allclose(pre, manual)
    assert pre.min() >= -1 and pre.max() <= 1  # [-1, 1]: the range pytorch-fid's network sees after 2x - 1
    assert torch.equal(InceptionV3.preprocess(manual), manual)  # 299 x 299 RGB passes unchanged
    feats, logits = net.embed(x)
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    assert torch.isfinite(feats).all() and (feats >= 0).all()  # average of ReLU outputs
    with torch.no_grad():
        assert torch.allclose(net(manual[:1]), feats[:1], atol=1e-5)


def test_eval_featurizer_accepts_an_inception_weights_file(net, tmp_path):
    from torchdiffusion.evaluate.data import load_featurizer
    path = tmp_path / "pt_inception.pth"
    torch.save(net.state_dict(), path)
    featurizer, info = load_featurizer(str(path), "digits")  # this file has the counters
    assert torch.equal(featurizer.state_dict()["Mixed_7c.branch_pool.bn.running_var"],
                       net.state_dict()["Mixed_7c.branch_pool.bn.running_var"])
    assert info["kind"] == "inception_v3_pool3" and info["dim"] == 2048 and "not verified" in info["note"]
    with pytest.raises(ValueError, match="no such file"):
        load_featurizer(str(tmp_path / "missing.pth"), "digits")
