"""MODEL.EXTRA defaults per model name; a YAML may only set keys that exist here."""

from yacs.config import CfgNode as CN


def _hrnet_stage(num_modules: int, num_branches: int, num_blocks, num_channels) -> CN:
    stage = CN()
    stage.NUM_MODULES = num_modules
    stage.NUM_BRANCHES = num_branches
    stage.BLOCK = "BASIC"
    stage.NUM_BLOCKS = list(num_blocks)
    stage.NUM_CHANNELS = list(num_channels)
    stage.FUSE_METHOD = "SUM"
    return stage


def _pose_hrnet_extra() -> CN:
    """HRNet-W32 as the published top-down experiments configure it."""
    extra = CN()
    extra.PRETRAINED_LAYERS = ["conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2",
                               "transition2", "stage3", "transition3", "stage4"]
    extra.FINAL_CONV_KERNEL = 1
    # layer1 between the stem and stage 2. The published models fix it at four Bottlenecks of 64
    # planes; small HRNets (and the CPU-sized synthetic experiment) make it lighter.
    extra.STAGE1 = CN()
    extra.STAGE1.BLOCK = "BOTTLENECK"
    extra.STAGE1.NUM_BLOCKS = [4]
    extra.STAGE1.NUM_CHANNELS = [64]
    extra.STAGE2 = _hrnet_stage(1, 2, [4, 4], [32, 64])
    extra.STAGE3 = _hrnet_stage(4, 3, [4, 4, 4], [32, 64, 128])
    extra.STAGE4 = _hrnet_stage(3, 4, [4, 4, 4, 4], [32, 64, 128, 256])
    return extra


def _pose_resnet_extra() -> CN:
    """SimpleBaseline ResNet-50 with three 256-filter deconvolutions."""
    extra = CN()
    extra.NUM_LAYERS = 50
    extra.DECONV_WITH_BIAS = False
    extra.NUM_DECONV_LAYERS = 3
    extra.NUM_DECONV_FILTERS = [256, 256, 256]
    extra.NUM_DECONV_KERNELS = [4, 4, 4]
    extra.FINAL_CONV_KERNEL = 1
    return extra


def _pose_hourglass_extra() -> CN:
    """DARK's stacked hourglass: four stacks of 256 features, one residual unit per position."""
    extra = CN()
    extra.NUM_FEATURES = 256
    extra.NUM_STACKS = 4
    extra.NUM_BLOCKS = 1
    return extra


def _hrnext_stage(num_modules: int | None, num_blocks, num_channels, num_kernels) -> CN:
    stage = CN()
    if num_modules is not None:
        stage.NUM_MODULES = num_modules
    stage.NUM_BLOCKS = list(num_blocks)
    stage.NUM_CHANNELS = list(num_channels)
    # Kernel banks of each branch's dynamic convolutions; 1 makes them plain convolutions.
    stage.NUM_KERNELS = list(num_kernels)
    return stage


def _pose_hrnext_extra() -> CN:
    """HRNeXt-S (HRNeXt-B: widths 48/96/192/384 and kernel banks 8, (8,4), (8,4,2), (8,4,2,1))."""
    extra = CN()
    extra.FINAL_CONV_KERNEL = 1
    # Stochastic depth, linear from 0 to this rate over the network's 18 block positions.
    extra.DROP_PATH_RATE = 0.1
    # Gradient checkpointing per block: less memory in training, one more forward pass per step.
    extra.WITH_CP = False
    # Hidden width of the dynamic inverted bottleneck, as a multiple of the branch width.
    extra.MLP_RATIO = 4
    # Stage 1 is one layer at the stem width, so it has no NUM_MODULES.
    extra.STAGE1 = _hrnext_stage(None, [2], [64], [4])
    extra.STAGE2 = _hrnext_stage(2, [2, 2], [32, 64], [4, 2])
    extra.STAGE3 = _hrnext_stage(4, [2, 2, 2], [32, 64, 128], [4, 2, 1])
    extra.STAGE4 = _hrnext_stage(2, [2, 2, 2, 2], [32, 64, 128, 256], [4, 2, 1, 1])
    return extra


def _pose_higher_hrnet_extra() -> CN:
    """HigherHRNet-W32: the HRNet-W32 trunk, and one deconvolution step (4x4, 32 channels, four
    BasicBlocks, fed the 1/4-resolution output too) to a 1/2-resolution heatmap head.

    NUM_DECONVS 0 (with empty lists and LOSS.NUM_STAGES 1) leaves the plain HRNet bottom-up model
    with only the 1/4-resolution head.
    """
    extra = _pose_hrnet_extra()
    # HigherHRNet's experiments start from the whole ImageNet file ('*'): its classifier keys have
    # no counterpart in the pose model and are skipped.
    extra.PRETRAINED_LAYERS = ["*"]
    extra.DECONV = CN()
    extra.DECONV.NUM_DECONVS = 1
    # One entry per deconvolution step.
    extra.DECONV.NUM_CHANNELS = [32]
    extra.DECONV.KERNEL_SIZE = [4]  # 4, 3 or 2; each step doubles the resolution
    extra.DECONV.NUM_BASIC_BLOCKS = 4
    # Concatenate the previous stage's output (heatmaps and tags) to the step's input features.
    extra.DECONV.CAT_OUTPUT = [True]
    return extra


def _stn_head(channels: int, dilations) -> CN:
    """Parallel branches of STN (adaptive-convolution) blocks, one per dilation."""
    head = CN()
    head.BLOCK = ["STNBLOCK"] * len(dilations)
    head.NUM_BLOCKS = [1] * len(dilations)
    head.NUM_CHANNELS = [channels] * len(dilations)
    head.DILATION_RATE = list(dilations)
    return head


def _pose_hrnet_regression_extra() -> CN:
    """The 2020 heatmap-guided regression network, W32: the HRNet-W32 trunk with all four
    branches leaving stage 4, three heatmap branches of STN blocks (dilations 1, 2, 3; their
    convolution weights shared) and one 256-channel STN branch for offsets and the centre."""
    extra = _pose_hrnet_extra()
    extra.PRETRAINED_LAYERS = ["*"]
    extra.MULTI_LEVEL_OUTPUT_HEATMAP = _stn_head(32, [1, 2, 3])
    extra.MULTI_LEVEL_OUTPUT_REGRESSION = _stn_head(256, [1])
    return extra


def _pose_higher_hrnet_regression_extra() -> CN:
    """The regression network with one 1/2-resolution heatmap step (the reference released it
    at W48: widths 48, 96, 192, 384, heads and DECONV.NUM_CHANNELS 48)."""
    extra = _pose_hrnet_regression_extra()
    extra.DECONV = CN()
    # Exactly one step; its input is the heatmap features with the mean 1/4-resolution heatmaps.
    extra.DECONV.NUM_DECONVS = 1
    extra.DECONV.NUM_CHANNELS = [32]
    extra.DECONV.KERNEL_SIZE = [4]
    extra.DECONV.NUM_BASIC_BLOCKS = 1
    extra.DECONV.CAT_OUTPUT = [True]
    return extra


MODEL_EXTRAS = {
    "pose_hrnet": _pose_hrnet_extra,
    "pose_resnet": _pose_resnet_extra,
    "pose_hourglass": _pose_hourglass_extra,
    "pose_hrnext": _pose_hrnext_extra,
    "pose_higher_hrnet": _pose_higher_hrnet_extra,
    "pose_hrnet_regression": _pose_hrnet_regression_extra,
    "pose_higher_hrnet_regression": _pose_higher_hrnet_regression_extra,
}

# Models that find every person in the whole image at once (DATASET.INPUT_SIZE / OUTPUT_SIZE,
# LOSS.NUM_STAGES, grouping); every other MODEL.NAME is top-down (MODEL.IMAGE_SIZE, person boxes).
BOTTOM_UP_MODELS = frozenset({"pose_higher_hrnet", "pose_hrnet_regression",
                              "pose_higher_hrnet_regression"})


def is_bottom_up(model_name: str) -> bool:
    """Whether MODEL.NAME is a bottom-up model; the paradigm follows from the name alone."""
    return model_name in BOTTOM_UP_MODELS


# Bottom-up models of the 2020 heatmap-guided keypoint regression paper: centre heatmaps and
# offsets instead of tags (their own targets, loss, decoding, rescoring and training loop).
REGRESSION_MODELS = frozenset({"pose_hrnet_regression", "pose_higher_hrnet_regression"})


def is_regression(model_name: str) -> bool:
    """Whether MODEL.NAME is a keypoint-regression model (a bottom-up model without tags)."""
    return model_name in REGRESSION_MODELS


def get_model_extra(model_name: str) -> CN:
    """A fresh EXTRA block for a model name; KeyError for an unknown name."""
    return MODEL_EXTRAS[model_name]()
