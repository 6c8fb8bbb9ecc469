"""VLM-RM's CLIP goal reward: the formula against NumPy, its special cases, and a tiny random
CLIP saved to disk and loaded back offline."""

from __future__ import annotations

import string

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from robotrl.rewards.clip import CLIPGoalReward, ModelFilesError, vlm_rm_reward  # noqa: E402

WORDS = ("a", "robot", "ball", "on", "the", "green", "disc", "far", "from", "target", "scene")
TARGET = ("a ball on the green disc",)
BASELINE = ("a scene",)


def numpy_reward(x: np.ndarray, g: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """The formula written out in float64 with an explicit projection matrix."""
    d = g - b
    projection = alpha * np.outer(d, d) / (d @ d) + (1 - alpha) * np.eye(len(d))
    residual = (x - g) @ projection
    return 1 - 0.5 * np.sum(residual**2, axis=-1)


def unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    x = rng.normal(size=(rows, dim))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 1.0])
def test_formula_matches_numpy(alpha):
    rng = np.random.default_rng(0)
    x = unit_rows(rng, 7, 16)
    g = unit_rows(rng, 3, 16).mean(0)  # a mean of unit vectors, as for several prompts
    b = unit_rows(rng, 2, 16).mean(0)
    expected = numpy_reward(x, g, b, alpha)
    got = vlm_rm_reward(
        torch.tensor(x, dtype=torch.float64),
        torch.tensor(g, dtype=torch.float64),
        torch.tensor(b, dtype=torch.float64),
        alpha,
    ).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    got32 = vlm_rm_reward(*(torch.tensor(v, dtype=torch.float32) for v in (x, g, b)), alpha)
    np.testing.assert_allclose(got32.numpy(), expected, atol=1e-6, rtol=0)


def test_alpha_zero_is_cosine_similarity_for_unit_vectors():
    rng = np.random.default_rng(1)
    x = unit_rows(rng, 5, 16)
    g, b = unit_rows(rng, 2, 16)
    got = vlm_rm_reward(*(torch.tensor(v, dtype=torch.float64) for v in (x, g, b)), 0.0)
    np.testing.assert_allclose(got.numpy(), x @ g, atol=1e-12)


def test_alpha_one_ignores_components_orthogonal_to_the_direction():
    rng = np.random.default_rng(2)
    x = unit_rows(rng, 5, 16)
    g, b = unit_rows(rng, 2, 16)
    d = g - b
    noise = rng.normal(size=x.shape)
    orthogonal = noise - np.outer(noise @ d / (d @ d), d)
    assert np.abs(orthogonal @ d).max() < 1e-12
    args = [torch.tensor(v, dtype=torch.float64) for v in (g, b)]
    base = vlm_rm_reward(torch.tensor(x), *args, 1.0).numpy()
    moved = vlm_rm_reward(torch.tensor(x + 3.0 * orthogonal), *args, 1.0).numpy()
    np.testing.assert_allclose(moved, base, atol=1e-12)
    # ... which α < 1 does not ignore: the test can tell the two apart.
    partial = vlm_rm_reward(torch.tensor(x + 3.0 * orthogonal), *args, 0.5).numpy()
    assert np.abs(partial - vlm_rm_reward(torch.tensor(x), *args, 0.5).numpy()).min() > 1e-3


# -- a tiny random CLIP on disk ------------------------------------------------------------------


def tiny_tokenizer() -> transformers.CLIPTokenizer:
    """A byte-pair tokenizer that spells WORDS as single tokens (letters for anything else)."""
    vocab: dict[str, int] = {}
    for letter in string.ascii_lowercase:
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            if (pieces[0], pieces[1]) not in merges:
                merges.append((pieces[0], pieces[1]))
            vocab.setdefault(merged, len(vocab))
            pieces = [merged, *pieces[2:]]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return transformers.CLIPTokenizer(vocab=vocab, merges=merges)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    text = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 16,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    directory = tmp_path_factory.mktemp("tiny_clip")
    transformers.CLIPModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_loads_offline_and_matches_the_formula_on_its_own_embeddings(clip_dir):
    reward = CLIPGoalReward(clip_dir, TARGET, BASELINE, alpha=0.5)
    frames = torch.randint(0, 256, (4, 3, 48, 48), dtype=torch.uint8)
    x = reward.image_embeddings(frames).double().numpy()
    g = reward.prompt_embedding(TARGET).double().numpy()
    b = reward.prompt_embedding(BASELINE).double().numpy()
    np.testing.assert_allclose(np.linalg.norm(x, axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(g), 1.0, atol=1e-6)  # one prompt: a unit vector
    np.testing.assert_allclose(
        reward.score(frames).numpy(), numpy_reward(x, g, b, 0.5), atol=1e-6, rtol=0
    )
    # The prompt embeddings are cached, and different prompts give different embeddings.
    assert reward.prompt_embedding(TARGET) is reward.prompt_embedding(TARGET)
    assert not torch.allclose(reward.prompt_embedding(TARGET), reward.prompt_embedding(BASELINE))
    # An instruction replaces the target prompts.
    other = reward.score(frames, instruction="a robot far from the target")
    assert not torch.allclose(other, reward.score(frames))


def test_batched_and_unbatched_scores_agree(clip_dir):
    reward = CLIPGoalReward(clip_dir, (*TARGET, "the robot on the disc"), BASELINE, batch_size=3)
    frames = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8)
    batched = reward.score(frames)
    one_by_one = torch.cat([reward.score(frames[i : i + 1]) for i in range(7)])
    assert batched.shape == (7,) and batched.dtype == torch.float32
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=0)
    assert batched.std() > 0  # the images are told apart


def test_blank_noise_and_saturated_frames_give_finite_rewards(clip_dir):
    reward = CLIPGoalReward(clip_dir, TARGET, BASELINE, alpha=1.0)
    frames = torch.stack(
        [
            torch.zeros(3, 24, 40, dtype=torch.uint8),  # not square: resized and centre-cropped
            torch.full((3, 24, 40), 255, dtype=torch.uint8),
            torch.randint(0, 256, (3, 24, 40), dtype=torch.uint8),
        ]
    )
    assert reward.preprocess(frames).shape == (3, 3, 32, 32)
    scores = reward.score(frames)
    assert torch.isfinite(scores).all()
    # Unit vectors x and g: ‖x − g‖ ≤ 2, so r ≥ 1 − 2 = −1 for α = 1 (P a projection), and ≤ 1.
    assert (scores <= 1.0 + 1e-6).all() and (scores >= -1.0 - 1e-6).all()


def test_missing_directory_names_the_files_expected(tmp_path):
    with pytest.raises(ModelFilesError, match=r"does not exist.*config\.json.*model\.safetensors"):
        CLIPGoalReward(tmp_path / "nowhere", TARGET, BASELINE)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelFilesError, match=r"lacks model\.safetensors.*tokenizer\.json"):
        CLIPGoalReward(tmp_path, TARGET, BASELINE)
