"""sumn_training_flops: the analytic FLOP count behind the benchmark's MFU."""

import pytest

from model.sumn.flops import sumn_training_flops
from util.errors import UserInputError

# batch 2, 10 words, grid of 3 behaviours, E=4, D=5, decoder 5 -> 6 -> V=7.
SHAPES = {
    "batch_size": 2,
    "num_words": 10,
    "num_behaviours_padded": 3,
    "word_emb_dim": 4,
    "model_dim": 5,
    "mlp_layers": (6,),
    "vocabulary_size": 7,
}
SEGMENT_SUM_ADDS = 2 * 10 * 4  # forward sum + backward scatter-add


@pytest.mark.parametrize(
    "pooling, num_hops, forward_matmul_flops",
    [
        # projection 2*6*4*5 = 240; decoder on 2 rows: 2*2*5*6 + 2*2*6*7 = 288
        pytest.param("max", 5, 240 + 288, id="max_ignores_num_hops"),
        pytest.param("mean", 5, 240 + 288, id="mean_ignores_num_hops"),
        # + keys and values 2*(2*6*5*5) = 600; per hop scores and read-out 2*(2*6*5) = 120;
        # decoder on 4 rows: 2*4*5*6 + 2*4*6*7 = 576
        pytest.param("mhop", 2, 240 + 600 + 2 * 120 + 576, id="mhop_two_hops"),
        # + behaviour half of W1 2*6*5*5 = 300; per hop: state half 2*2*5*5 = 100, w2 60,
        # read-out 60, GRU kernels 2*(2*2*5*15) = 600
        pytest.param("gruhop", 2, 240 + 300 + 2 * (100 + 60 + 60 + 600) + 576, id="gruhop_two_hops"),
    ],
)
def test_flops_follow_the_documented_counting_rule(pooling, num_hops, forward_matmul_flops):
    flops = sumn_training_flops(pooling=pooling, num_hops=num_hops, **SHAPES)

    assert flops == 3 * forward_matmul_flops + SEGMENT_SUM_ADDS


def test_flops_grow_with_the_real_words_not_only_the_grid():
    few_words = sumn_training_flops(pooling="mhop", num_hops=5, **SHAPES)
    more_words = sumn_training_flops(pooling="mhop", num_hops=5, **{**SHAPES, "num_words": 20})

    assert more_words - few_words == 2 * 10 * SHAPES["word_emb_dim"]


def test_unknown_pooling_names_the_flag():
    with pytest.raises(UserInputError, match="--pooling"):
        sumn_training_flops(pooling="attention", num_hops=5, **SHAPES)


def test_encoder_flops_follow_the_present_behaviours_not_the_grid():
    full_grid = sumn_training_flops(pooling="mhop", num_hops=2, **SHAPES)
    one_absent = sumn_training_flops(pooling="mhop", num_hops=2, num_behaviours=5, **SHAPES)

    # One row fewer: projection 2*4*5, keys and values 2*(2*5*5), two hops of scores and read-out 2*(2*2*5).
    assert full_grid - one_absent == 3 * (40 + 100 + 40)
    assert sumn_training_flops(pooling="mhop", num_hops=2, num_behaviours=6, **SHAPES) == full_grid
