"""Error paths of the image network (UNet): bad shapes, bad labels, guidance without classes.
Tiny UNets only (a few thousand parameters); the whole file runs in well under a second."""

from __future__ import annotations

import numpy as np
import pytest

import swiftddpm as sd

TINY = dict(network="unet", base_channels=4, channel_mult=(1, 2), attention_levels=(), groups=2, time_embed_dim=8,
            seed=5)


@pytest.fixture
def schedule():
    with sd.NoiseSchedule.linear(50, scale_to_steps=True) as s:
        yield s


def unet(schedule, **options):
    try:
        return sd.Model(schedule, **{**TINY, "image_shape": (1, 8, 8), **options})
    except sd.InvalidArgumentError as error:
        if "not built" in str(error):
            pytest.skip(f"this library has no UNet: {error}")
        raise


@pytest.mark.parametrize("shape, mult, what", [
    ((1, 6, 8), (1, 2, 2), r"height 6 is not divisible by 2\^\(levels-1\) = 4"),
    ((1, 8, 6), (1, 2, 2), r"width 6 is not divisible by 2\^\(levels-1\) = 4"),
    ((1, 12, 12), (1, 2, 2, 2), r"height 12 is not divisible by 2\^\(levels-1\) = 8"),
])
def test_image_size_must_divide_by_the_downsampling(schedule, shape, mult, what):
    with pytest.raises(sd.InvalidArgumentError, match=what):
        unet(schedule, image_shape=shape, channel_mult=mult)
    # One level never downsamples, so any size works.
    with unet(schedule, image_shape=(1, 6, 6), channel_mult=(1,)) as m:
        assert m.sample(1, method="ddim", steps=2).shape == (1, 1, 6, 6)


def test_bad_image_shapes_and_levels(schedule):
    with pytest.raises(sd.InvalidArgumentError, match=r"image_shape must be \(channels, height, width\)"):
        unet(schedule, image_shape=(1, 8))
    with pytest.raises(sd.InvalidArgumentError, match="channels must be >= 1"):
        unet(schedule, image_shape=(0, 8, 8))
    with pytest.raises(sd.InvalidArgumentError, match="height and width"):
        sd.Model(schedule, **TINY)  # a UNet without image_shape
    with pytest.raises(sd.InvalidArgumentError, match="1 to 8 entries"):  # DDPM_UNET_MAX_LEVELS
        unet(schedule, channel_mult=(1, 2, 2, 2, 2, 2, 2, 2, 2))
    with pytest.raises(sd.InvalidArgumentError, match="attention level 2 is outside"):
        unet(schedule, attention_levels=(2,))
    with pytest.raises(sd.InvalidArgumentError, match="groups"):
        unet(schedule, groups=3)


def test_wrong_channel_count_or_size_of_the_data(schedule):
    with unet(schedule, image_shape=(2, 8, 8)) as m:
        shape_msg = r"must have shape \(B, 2, 8, 8\) or \(B, 128\)"
        for bad in [np.zeros((2, 1, 8, 8)), np.zeros((2, 3, 8, 8)), np.zeros((2, 2, 4, 8)), np.zeros((2, 127)),
                    np.zeros((2, 8, 8))]:
            with pytest.raises(sd.ShapeError, match=shape_msg):
                m.train_step(bad.astype(np.float32))
        with pytest.raises(sd.ShapeError, match=shape_msg):
            m.predict(np.zeros((2, 1, 8, 8), np.float32), 3)
        assert m.step == 0  # nothing was trained by the failed calls
        assert np.isfinite(m.train_step(np.zeros((2, 2, 8, 8), np.float32)))
        assert np.isfinite(m.train_step(np.zeros((2, 128), np.float32)))  # flat rows work too
        with pytest.raises(sd.NonFiniteError, match="nan"):
            m.train_step(np.full((2, 2, 8, 8), np.nan, np.float32))
        assert m.step == 2


def test_labels_out_of_range(schedule):
    x = np.zeros((2, 1, 8, 8), np.float32)
    with unet(schedule, num_classes=3) as m:
        for labels in ([0, 4], [-1, 0]):
            with pytest.raises(sd.InvalidArgumentError, match="outside 0..<3"):
                m.train_step(x, labels=labels)
            with pytest.raises(sd.InvalidArgumentError, match="outside 0..<3"):
                m.sample(2, method="ddim", steps=2, labels=labels)
            with pytest.raises(sd.InvalidArgumentError, match="outside 0..<3"):
                m.predict(x, 3, labels=labels)
        with pytest.raises(sd.ShapeError, match=r"labels must have shape \(2,\)"):
            m.train_step(x, labels=[0, 1, 2])
        assert m.step == 0
        m.train_step(x, labels=[0, 3])  # 3 = K is the null label ("no class")
        m.train_step(x)  # no labels: every row unconditional
        assert m.step == 2
        assert m.sample(2, method="ddim", steps=2, labels=[2, 3], guidance_scale=2.0).shape == (2, 1, 8, 8)


def test_labels_to_an_unconditional_unet(schedule):
    x = np.zeros((2, 1, 8, 8), np.float32)
    with unet(schedule) as m:
        with pytest.raises(sd.InvalidArgumentError, match="unconditional"):
            m.train_step(x, labels=[0, 1])
        with pytest.raises(sd.InvalidArgumentError, match="unconditional"):
            m.sample(2, method="ddim", steps=2, labels=[0, 0])
        with pytest.raises(sd.InvalidArgumentError, match="unconditional"):
            m.predict(x, 3, labels=0)
        assert m.step == 0


def test_guidance_without_labels_is_ignored(schedule):
    # Guidance needs labels; without them (conditional model or not) w changes nothing.
    x = np.random.default_rng(0).normal(size=(2, 1, 8, 8)).astype(np.float32)
    for num_classes in (0, 3):
        with unet(schedule, num_classes=num_classes) as m:
            m.train_step(x)
            plain = m.sample(2, method="ddim", steps=3, seed=1)
            np.testing.assert_array_equal(m.sample(2, method="ddim", steps=3, seed=1, guidance_scale=3.0), plain)
            np.testing.assert_array_equal(m.predict(x, 5, guidance_scale=3.0), m.predict(x, 5))
            with pytest.raises(sd.InvalidArgumentError, match="guidance[_ ]scale must be finite"):
                m.sample(2, method="ddim", steps=3, guidance_scale=float("nan"))


def test_res_blocks_reaches_the_library(schedule):
    with unet(schedule, res_blocks=1) as one, unet(schedule, res_blocks=3) as three:
        assert one.network.res_blocks == 1 and three.network.res_blocks == 3
        assert one.num_parameters < three.num_parameters


def test_signal_unet_takes_flat_signals(schedule):
    """A 1-D UNet (height 1): only the length must divide by 2^(levels-1) (50 = 2·25 with two
    levels); fit takes (N, length) and samples come back (n, length) too, the values of the
    (n, 1, 1, length) layout the network works in; with 2 channels (n, 2, length)."""
    config = sd.UNetConfig.signal(50, base_channels=4, channel_mult=(1, 2), attention_levels=(1,), groups=2,
                                  time_embed_dim=8)
    assert (config.channels, config.height, config.width) == (1, 1, 50)
    data = np.sin(np.linspace(0, 6, 50, dtype=np.float32))[None].repeat(16, 0)
    with sd.Model(schedule, network=config) as m:
        losses = m.fit(data, 3, batch_size=8, seed=1)
        assert np.isfinite(losses).all()
        flat = m.sample(2, method="ddim", steps=2, seed=3)
        assert flat.shape == (2, 50)  # the layout fit takes
        snapshots = m.sample(2, method="ddim", steps=2, seed=3, return_trajectory=True)[1]
        np.testing.assert_array_equal(snapshots[-1], flat)  # the final x_0, reshaped alike
        np.testing.assert_array_equal(m.predict(flat.reshape(2, 1, 1, 50), 5).reshape(2, 50), m.predict(flat, 5))
    with sd.Model(schedule, network=sd.UNetConfig.signal(8, channels=2, base_channels=4, channel_mult=(1,),
                                                         attention_levels=(), groups=2, time_embed_dim=8)) as m2:
        assert m2.sample(3, method="ddim", steps=2).shape == (3, 2, 8)
    with pytest.raises(sd.InvalidArgumentError, match=r"width 50 is not divisible by 2\^\(levels-1\) = 4"):
        sd.Model(schedule, network=sd.UNetConfig.signal(50, base_channels=4, channel_mult=(1, 2, 2),
                                                        attention_levels=(), groups=2, time_embed_dim=8))
