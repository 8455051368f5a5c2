"""Contract every backbone honours; one subclass per backbone family (tiny configs, CPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class BackboneContract:
    """Subclasses define ``build(**overrides)``, ``input_sizes`` and ``expected_strides``."""

    input_sizes: tuple[tuple[int, int], ...] = ((64, 64),)
    expected_strides: tuple[int, ...] = (4, 8, 16, 32)

    def build(self, **overrides) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def test_output_shapes_follow_strides_and_channels(self):
        model = self.build().eval()
        assert list(model.strides) == list(self.expected_strides)
        for h, w in self.input_sizes:
            with torch.no_grad():
                feats = model(torch.randn(2, 3, h, w))
            assert isinstance(feats, tuple) and len(feats) == 4
            for f, c, s in zip(feats, model.out_channels, model.strides, strict=True):
                assert f.shape == (2, c, h // s, w // s)
                assert torch.isfinite(f).all()

    def test_every_parameter_gets_a_gradient(self):
        model = self.build().train()
        h, w = self.input_sizes[-1]
        feats = model(torch.randn(2, 3, h, w))
        sum(f.float().square().mean() for f in feats).backward()
        no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not no_grad, f"parameters without gradient: {no_grad[:5]}"

    def test_batch_elements_are_independent(self):
        model = self.build().eval()
        h, w = self.input_sizes[0]
        x = torch.randn(3, 3, h, w)
        with torch.no_grad():
            full = model(x)
            single = model(x[1:2])
        for a, b in zip(full, single, strict=True):
            torch.testing.assert_close(a[1:2], b, rtol=1e-4, atol=1e-5)

    def test_activation_checkpointing_gives_the_same_gradients(self):
        torch.manual_seed(0)
        plain = self.build(drop_path_rate=0.0).train()
        ckpt = self.build(drop_path_rate=0.0, use_checkpoint=True).train()
        ckpt.load_state_dict(plain.state_dict())
        h, w = self.input_sizes[0]
        x = torch.randn(1, 3, h, w)
        grads = []
        for model in (plain, ckpt):
            sum(f.sum() for f in model(x)).backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        assert grads[0].keys() == grads[1].keys()
        for name in grads[0]:
            torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6, msg=name)

    @pytest.mark.parametrize("bad_shape", [(1, 3, 60, 64), (3, 64, 64)])
    def test_bad_input_shape_is_a_clear_error(self, bad_shape):
        model = self.build().eval()
        with pytest.raises(ValueError, match=r"multiples of|expects"):
            model(torch.randn(*bad_shape))
