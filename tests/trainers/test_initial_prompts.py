"""Initial learnable tensors for a fixed seed are pinned: the random draws (their order and shapes) and the
initialisation from words must not change, because a later step makes our runs seed-for-seed identical to the
official ones.

The fingerprints below were recorded with the code before the context initialisers and deep-prompt containers
were merged into one (commit a510f43). The CLIP has widths 72 and the contexts 3 or 5 tokens, so ``n * width``
is not a multiple of 16: torch's CPU ``normal_`` then gives different numbers for one ``(levels, n, width)`` draw
than for one ``(n, width)`` draw per level, and a changed draw shape shows here. A fingerprint is each tensor's
shape, sum and a position-weighted sum (float64), compared at 1e-6: a different draw changes them by ~1e-2,
while the last-bit differences of ``normal_`` between CPU instruction sets stay far below.
"""
from __future__ import annotations

import pytest
import torch

from engine.checkpoint import learnable_state_dict
from tools.make_toy_clip import make_toy_clip_state_dict

from .helpers import build, caltech_argv

CASES = {
    # name: (trainer, config, extra opts)
    "CoOp_random": ("CoOp", "CoOp/vit_b16.yaml", ["TRAINER.COOP.N_CTX", "3"]),
    "CoOp_csc": ("CoOp", "CoOp/vit_b16.yaml", ["TRAINER.COOP.N_CTX", "3", "TRAINER.COOP.CSC", "True"]),
    "CoOp_words": ("CoOp", "CoOp/vit_b16_ctxv1.yaml", ["TRAINER.COOP.CLASS_TOKEN_POSITION", "middle"]),
    "CoCoOp_random": ("CoCoOp", "CoCoOp/vit_b16_c4_ep10_batch1.yaml", ["TRAINER.COCOOP.N_CTX", "3"]),
    "CoCoOp_words": ("CoCoOp", "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml", []),
    "MaPLe_words": ("MaPLe", "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", ["TRAINER.MAPLE.N_CTX", "3"]),
    "MaPLe_random": ("MaPLe", "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", ["TRAINER.MAPLE.N_CTX", "5"]),
    "IVLP": ("IVLP", "IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml",
             ["TRAINER.IVLP.N_CTX_TEXT", "3", "TRAINER.IVLP.N_CTX_VISION", "5"]),
    "IVLP_language": ("IVLP", "IVLP/vit_b16_c2_ep5_batch4_4ctx_language_only.yaml", ["TRAINER.IVLP.N_CTX_TEXT", "5"]),
    "VPT": ("VPT", "VPT/vit_b16_c2_ep5_batch4_4.yaml", ["TRAINER.VPT.N_CTX_VISION", "3"]),
    "MuDPT_words": ("MuDPT", "MuDPT/vit_b16_bz4_ep10_nctx4_depth9.yaml",
                    ["TRAINER.MUDPT.N_CTX", "3", "TRAINER.MUDPT.DEEP_PROMPT_DEPTH", "3"]),
    "MuDPT_random": ("MuDPT", "MuDPT/vit_b16_bz4_ep10_nctx4_depth9.yaml",
                     ["TRAINER.MUDPT.N_CTX", "3", "TRAINER.MUDPT.DEEP_PROMPT_DEPTH", "3", "TRAINER.MUDPT.CTX_INIT",
                      "''"]),
    "UMuDPT": ("UMuDPT", "UMuDPT/vit_b16_bz4_ep5_nctx2_depth9.yaml",
               ["TRAINER.UMUDPT.N_CTX", "3", "TRAINER.UMUDPT.DEEP_PROMPT_DEPTH", "3"]),
    "UUMuDPT": ("UUMuDPT", "UUMuDPT/vit_b16_bz4_ep10_nctx4_depth9.yaml",
                ["TRAINER.UUMUDPT.N_CTX", "3", "TRAINER.UUMUDPT.DEEP_PROMPT_DEPTH", "3"]),
}

RECORDED = {
    'CoCoOp_random': {
        'ctx': ((3, 72), -0.2646106243482791, 0.06679440820765636),
        'meta_net.linear1.bias': ((2,), 0.09323137998580933, 0.24362945556640625),
        'meta_net.linear1.weight': ((2, 32), -0.4405506476177834, -0.7361164999477166),
        'meta_net.linear2.bias': ((72,), 0.9211131539195776, -1.3354075167747865),
        'meta_net.linear2.weight': ((72, 2), -0.3179904113058001, 1.8947738004942793),
    },
    'CoCoOp_words': {
        'ctx': ((4, 72), 6.4780648946762085, -0.4183597435934619),
        'meta_net.linear1.bias': ((2,), -0.053012811578810215, 0.06685569044202566),
        'meta_net.linear1.weight': ((2, 32), 0.5406559330003802, 0.006312271439200615),
        'meta_net.linear2.bias': ((72,), -0.18743154127150774, -0.8226096607928339),
        'meta_net.linear2.weight': ((72, 2), -3.7247166130691767, 1.9839500127737963),
    },
    'CoOp_csc': {
        'ctx': ((6, 3, 72), 0.3828106077380653, 0.27396864651784764),
    },
    'CoOp_random': {
        'ctx': ((3, 72), -0.2646106243482791, 0.06679440820765636),
    },
    'CoOp_words': {
        'ctx': ((4, 72), 6.4780648946762085, -0.4183597435934619),
    },
    'IVLP': {
        'image_encoder.VPT': ((5, 72), 0.08219513083713537, -0.5382298110753027),
        'image_encoder.transformer.resblocks.1.VPT_shallow': ((5, 72), -0.1972288193865097, -0.0463429086431919),
        'prompt_learner.ctx': ((3, 72), 4.3118754625320435, -1.07176878452301),
        'text_encoder.transformer.resblocks.1.VPT_shallow': ((3, 72), -0.2646106243482791, 0.06679440820765636),
    },
    'IVLP_language': {
        'prompt_learner.ctx': ((5, 72), -0.24693088961794274, 0.22331945917118443),
        'text_encoder.transformer.resblocks.1.VPT_shallow': ((5, 72), -0.434513136782698, 0.4547475951796748),
    },
    'MaPLe_random': {
        'prompt_learner.compound_prompt_projections.0.bias': ((72,), 0.08975700970040634, 0.6218104079836311),
        'prompt_learner.compound_prompt_projections.0.weight': ((72, 72), -9.028825182002038, 6.957466599273345),
        'prompt_learner.compound_prompts_text.0': ((5, 72), 0.39722652029740857, 0.011519361160745617),
        'prompt_learner.ctx': ((5, 72), -0.24693088961794274, 0.22331945917118443),
        'prompt_learner.proj.bias': ((72,), -0.9712869783397764, -0.08633707878573366),
        'prompt_learner.proj.weight': ((72, 72), 8.516269862339868, 0.36066848948965247),
    },
    'MaPLe_words': {
        'prompt_learner.compound_prompt_projections.0.bias': ((72,), -0.5263236752070952, -0.13987941608615023),
        'prompt_learner.compound_prompt_projections.0.weight': ((72, 72), -12.873645223211497, 4.256421179705654),
        'prompt_learner.compound_prompts_text.0': ((3, 72), -0.3510131481070857, -0.19348060056335548),
        'prompt_learner.ctx': ((3, 72), 4.3118754625320435, -1.07176878452301),
        'prompt_learner.proj.bias': ((72,), 0.23639070219360292, -0.0021086314817706786),
        'prompt_learner.proj.weight': ((72, 72), 6.235666355169997, 1.1693241397794876),
    },
    'MuDPT_random': {
        'image_encoder.visual_ctx': ((3, 72), 0.05400773815563298, -0.0653300586182437),
        'image_encoder.visual_ctx_deep_projections.bias': ((72,), 0.5593523839488626, 0.21956141349452907),
        'image_encoder.visual_ctx_deep_projections.weight': ((72, 72), -0.6792357335252746, -0.5116878535057285),
        'image_encoder.visual_ctx_deep_prompts': ((2, 3, 72), 0.5865924306417583, -0.5207099051073558),
        'mudpt_prompt_learner.ctx': ((3, 72), -0.2646106243482791, 0.06679440820765636),
        'mudpt_prompt_learner.deep_projections.bias': ((72,), 0.0016761386068537831, 0.11659475202954202),
        'mudpt_prompt_learner.deep_projections.weight': ((72, 72), -8.185609554941038, 5.066031444092114),
        'mudpt_prompt_learner.deep_prompts': ((2, 3, 72), 0.16177629826961493, -0.3968160329708735),
        'mudpt_prompt_learner.embed_projection.bias': ((72,), -0.6416442933259532, 0.37003146258386144),
        'mudpt_prompt_learner.embed_projection.weight': ((72, 72), 2.5779086451630064, -3.1875898311213),
    },
    'MuDPT_words': {
        'image_encoder.visual_ctx': ((3, 72), 0.27116826246492565, 0.052034274527402405),
        'image_encoder.visual_ctx_deep_projections.bias': ((72,), 0.4635473873349838, -0.027408210966493415),
        'image_encoder.visual_ctx_deep_projections.weight': ((72, 72), -0.916721457735548, -0.8992385228969809),
        'image_encoder.visual_ctx_deep_prompts': ((2, 3, 72), -0.16741550371443736, -0.18330487946577345),
        'mudpt_prompt_learner.ctx': ((3, 72), 4.3118754625320435, -1.07176878452301),
        'mudpt_prompt_learner.deep_projections.bias': ((72,), -0.057683371007442474, 0.3644882475622786),
        'mudpt_prompt_learner.deep_projections.weight': ((72, 72), -8.531976648384443, 4.563173065183812),
        'mudpt_prompt_learner.deep_prompts': ((2, 3, 72), -0.07797761429537786, 0.39434831847044466),
        'mudpt_prompt_learner.embed_projection.bias': ((72,), -0.9185976864537224, -0.4609415269650282),
        'mudpt_prompt_learner.embed_projection.weight': ((72, 72), 4.752155692037377, -3.838816169728701),
    },
    'UMuDPT': {
        'umudpt_prompt_learner.ctx': ((3, 72), 4.3118754625320435, -1.07176878452301),
        'umudpt_prompt_learner.deep_prompts': ((2, 3, 72), -0.07797761429537786, 0.39434831847044466),
        'umudpt_prompt_learner.ln_post.bias': ((72,), 0.0, 0.0),
        'umudpt_prompt_learner.ln_post.weight': ((72,), 72.0, 3.3306690738754696e-16),
        'umudpt_prompt_learner.ln_pre.bias': ((72,), 0.0, 0.0),
        'umudpt_prompt_learner.ln_pre.weight': ((72,), 72.0, 3.3306690738754696e-16),
        'umudpt_prompt_learner.self_attn.attn.in_proj_bias': ((216,), 0.0, 0.0),
        'umudpt_prompt_learner.self_attn.attn.in_proj_weight': ((216, 72), -13.964018859740463, 14.094802719322585),
        'umudpt_prompt_learner.self_attn.attn.out_proj.bias': ((72,), 0.0, 0.0),
        'umudpt_prompt_learner.self_attn.attn.out_proj.weight': ((72, 72), 7.602777332064761, -0.3379761683280489),
        'umudpt_prompt_learner.self_attn.ln_1.bias': ((72,), 0.0, 0.0),
        'umudpt_prompt_learner.self_attn.ln_1.weight': ((72,), 72.0, 3.3306690738754696e-16),
        'umudpt_prompt_learner.self_attn.ln_2.bias': ((72,), 0.0, 0.0),
        'umudpt_prompt_learner.self_attn.ln_2.weight': ((72,), 72.0, 3.3306690738754696e-16),
        'umudpt_prompt_learner.self_attn.mlp.c_fc.bias': ((288,), -0.17266751213537646, -0.6089694392247664),
        'umudpt_prompt_learner.self_attn.mlp.c_fc.weight': ((288, 72), 3.9225033620910494, 1.204347528338391),
        'umudpt_prompt_learner.self_attn.mlp.c_proj.bias': ((72,), 0.32255447877105325, -0.08422453752161384),
        'umudpt_prompt_learner.self_attn.mlp.c_proj.weight': ((72, 288), 0.09981455964134511, -1.6719878546532723),
        'umudpt_prompt_learner.visual_proj.bias': ((72,), 0.8781905701034702, 0.4144454276768005),
        'umudpt_prompt_learner.visual_proj.weight': ((72, 72), 6.517523954984426, -1.4458816497405507),
    },
    'UUMuDPT': {
        'image_encoder.visual_ctx': ((3, 72), 0.27116826246492565, 0.052034274527402405),
        'image_encoder.visual_ctx_deep_prompts': ((2, 3, 72), -0.16741550371443736, -0.18330487946577345),
        'image_encoder.visual_ctx_ln_intra_post.bias': ((72,), 0.0, 0.0),
        'image_encoder.visual_ctx_ln_intra_post.weight': ((72,), 72.0, 3.3306690738754696e-16),
        'image_encoder.visual_ctx_ln_intra_pre.bias': ((72,), 0.0, 0.0),
        'image_encoder.visual_ctx_ln_intra_pre.weight': ((72,), 72.0, 3.3306690738754696e-16),
        'image_encoder.visual_ctx_self_attn.attn.in_proj_bias': ((216,), 0.0, 0.0),
        'image_encoder.visual_ctx_self_attn.attn.in_proj_weight': ((216, 72), -13.14299587980895, 11.293876448135492),
        'image_encoder.visual_ctx_self_attn.attn.out_proj.bias': ((72,), 0.0, 0.0),
        'image_encoder.visual_ctx_self_attn.attn.out_proj.weight': ((72, 72), -5.6800156383324065, 0.520489636736727),
        'image_encoder.visual_ctx_self_attn.ln_1.bias': ((72,), 0.0, 0.0),
        'image_encoder.visual_ctx_self_attn.ln_1.weight': ((72,), 72.0, 3.3306690738754696e-16),
        'image_encoder.visual_ctx_self_attn.ln_2.bias': ((72,), 0.0, 0.0),
        'image_encoder.visual_ctx_self_attn.ln_2.weight': ((72,), 72.0, 3.3306690738754696e-16),
        'image_encoder.visual_ctx_self_attn.mlp.c_fc.bias': ((288,), -0.14084571949206293, -0.7889601623117016),
        'image_encoder.visual_ctx_self_attn.mlp.c_fc.weight': ((288, 72), 8.450095493822914, -6.411997355880574),
        'image_encoder.visual_ctx_self_attn.mlp.c_proj.bias': ((72,), 0.19873515889048576, 0.2124291122169562),
        'image_encoder.visual_ctx_self_attn.mlp.c_proj.weight': ((72, 288), -1.574827814737489, -0.4499169999300652),
        'image_encoder.visual_ctx_text_proj.bias': ((72,), -0.12818202655762434, 0.3010487675529079),
        'image_encoder.visual_ctx_text_proj.weight': ((72, 72), 4.045245434828757, 0.3124469400828609),
        'uumudpt_prompt_learner.ctx': ((3, 72), 4.3118754625320435, -1.07176878452301),
        'uumudpt_prompt_learner.deep_prompts': ((2, 3, 72), -0.07797761429537786, 0.39434831847044466),
        'uumudpt_prompt_learner.ln_post.bias': ((72,), 0.0, 0.0),
        'uumudpt_prompt_learner.ln_post.weight': ((72,), 72.0, 3.3306690738754696e-16),
        'uumudpt_prompt_learner.ln_pre.bias': ((72,), 0.0, 0.0),
        'uumudpt_prompt_learner.ln_pre.weight': ((72,), 72.0, 3.3306690738754696e-16),
        'uumudpt_prompt_learner.self_attn.attn.in_proj_bias': ((216,), 0.0, 0.0),
        'uumudpt_prompt_learner.self_attn.attn.in_proj_weight': ((216, 72), -7.90436406135268, 11.815591985129991),
        'uumudpt_prompt_learner.self_attn.attn.out_proj.bias': ((72,), 0.0, 0.0),
        'uumudpt_prompt_learner.self_attn.attn.out_proj.weight': ((72, 72), 4.752155692037377, -3.838816169728701),
        'uumudpt_prompt_learner.self_attn.ln_1.bias': ((72,), 0.0, 0.0),
        'uumudpt_prompt_learner.self_attn.ln_1.weight': ((72,), 72.0, 3.3306690738754696e-16),
        'uumudpt_prompt_learner.self_attn.ln_2.bias': ((72,), 0.0, 0.0),
        'uumudpt_prompt_learner.self_attn.ln_2.weight': ((72,), 72.0, 3.3306690738754696e-16),
        'uumudpt_prompt_learner.self_attn.mlp.c_fc.bias': ((288,), 0.4717915795336012, 0.19171119660541858),
        'uumudpt_prompt_learner.self_attn.mlp.c_fc.weight': ((288, 72), 3.8568127097437923, 3.184819499579539),
        'uumudpt_prompt_learner.self_attn.mlp.c_proj.bias': ((72,), -0.455536141525954, -0.010477098446129478),
        'uumudpt_prompt_learner.self_attn.mlp.c_proj.weight': ((72, 288), 0.04248627293691243, -0.017446339007361145),
        'uumudpt_prompt_learner.visual_proj.bias': ((72,), -0.7934442907571793, 0.18669202843759677),
        'uumudpt_prompt_learner.visual_proj.weight': ((72, 72), 6.871807444475053, -2.4343459520041404),
    },
    'VPT': {
        'image_encoder.VPT': ((3, 72), -0.2646106243482791, 0.06679440820765636),
        'image_encoder.transformer.resblocks.1.VPT_shallow': ((3, 72), 0.3964757598205324, -0.4582800751076257),
    },
}


@pytest.fixture(scope="module")
def width72_clip_path(tmp_path_factory):
    """The toy CLIP (2 + 2 blocks) with both tower widths 72."""
    path = tmp_path_factory.mktemp("width72") / "toy72.pt"
    torch.save(make_toy_clip_state_dict(seed=0, vision_width=72, text_width=72), path)
    return path


def fingerprints(trainer, seed: int = 7):
    """``{official key: (shape, sum, weighted sum)}`` of a learner built by ``trainer`` right after seeding."""
    clip_model = trainer.model.clip
    torch.manual_seed(seed)
    learner = trainer.build_learner(clip_model, list(trainer.dm.dataset.classnames))
    registered = trainer.build_wrapper(clip_model, learner) if trainer.REGISTER_WHOLE_MODEL else learner
    (name,) = trainer.get_model_names()
    state = trainer.export_state_dict(name, learnable_state_dict(registered))
    out = {}
    for key, value in sorted(state.items()):
        flat = value.detach().double().reshape(-1)
        weights = torch.linspace(-1.0, 1.0, flat.numel(), dtype=torch.float64)
        out[key] = (tuple(value.shape), flat.sum().item(), (flat * weights).sum().item())
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_initial_tensors_unchanged(case, data_root, tmp_path, width72_clip_path):
    trainer_name, config, extra = CASES[case]
    node = f"TRAINER.{trainer_name.upper()}"
    trainer = build(caltech_argv(data_root, tmp_path / "out", width72_clip_path, trainer_name, config, 32,
                                 [*extra, f"{node}.PREC", "fp32"]))
    got = fingerprints(trainer)
    expected = RECORDED[case]
    assert sorted(got) == sorted(expected)
    for key, (shape, total, weighted) in expected.items():
        assert got[key][0] == shape, key
        assert abs(got[key][1] - total) <= 1e-6 and abs(got[key][2] - weighted) <= 1e-6, (key, got[key])
