"""The default configuration tree shared by every model family; experiment YAMLs override it."""

from yacs.config import CfgNode as CN

_C = CN()

_C.OUTPUT_DIR = "output"
_C.LOG_DIR = "log"
_C.DATA_DIR = ""
# "auto" uses CUDA when it is available and the CPU otherwise.
_C.DEVICE = "auto"
# The CUDA device of a one-process run (its first entry) and the GPU count of the experiment's
# recipe (TRAIN.AUTO_SCALE_LR). Under torchrun each process takes the GPU of its LOCAL_RANK.
_C.GPUS = (0,)
_C.WORKERS = 4
_C.PRINT_FREQ = 20
# Continue from <output dir>/checkpoint.pth when it exists (mid-epoch too; see
# TRAIN.CHECKPOINT_EVERY), with the same learning-rate schedule.
_C.AUTO_RESUME = False
_C.PIN_MEMORY = True
# Seeds Python, NumPy and torch (model init, per-iteration model draws), the shuffle of each
# epoch and the per-sample augmentation of each epoch.
_C.SEED = 0
# Deterministic kernels (torch.use_deterministic_algorithms, cuDNN deterministic, no cuDNN
# benchmark; overrides CUDNN.*): bit-identical reruns, slower.
_C.DETERMINISTIC = False
# Tensors in channels-last (NHWC) memory format for training and validation: "on", "off", or
# "auto" = on for CUDA (faster convolutions, above all under mixed precision), off on the CPU.
_C.CHANNELS_LAST = "auto"

_C.CUDNN = CN()
_C.CUDNN.BENCHMARK = True
_C.CUDNN.DETERMINISTIC = False
_C.CUDNN.ENABLED = True

_C.MODEL = CN()
_C.MODEL.NAME = "pose_hrnet"
_C.MODEL.INIT_WEIGHTS = True
# normal: N(0, 0.001) convolutions as the originals, which then load ImageNet weights; kaiming:
# He initialisation, which trains much faster from scratch (the synthetic demo).
_C.MODEL.INIT_METHOD = "normal"
_C.MODEL.PRETRAINED = ""
_C.MODEL.NUM_JOINTS = 17
_C.MODEL.IMAGE_SIZE = [256, 256]  # [width, height]
_C.MODEL.HEATMAP_SIZE = [64, 64]  # [width, height]
_C.MODEL.SIGMA = 2.0
# standard: HRNet's Gaussian at the rounded pixel; unbiased: DARK's at the sub-pixel position.
_C.MODEL.TARGET_ENCODING = "standard"
# Filled from config/model_extras.py according to MODEL.NAME before a YAML is merged.
_C.MODEL.EXTRA = CN()
# BatchNorm statistics over all processes of a distributed run (HRNeXt, HigherHRNet's syncbn
# experiment); a single-process run keeps plain BatchNorm.
_C.MODEL.SYNC_BN = False
# --- bottom-up (HigherHRNet) ---------------------------------------------------------------------
# Whether the paradigm is top-down or bottom-up follows from MODEL.NAME (config/model_extras.py,
# BOTTOM_UP_MODELS). Associative-embedding tags: one tag map per joint (True) or one shared map.
_C.MODEL.TAG_PER_JOINT = True

_C.LOSS = CN()
_C.LOSS.USE_OHKM = False
_C.LOSS.TOPK = 8
_C.LOSS.USE_TARGET_WEIGHT = True
_C.LOSS.USE_DIFFERENT_JOINTS_WEIGHT = False
# --- bottom-up (HigherHRNet) ---------------------------------------------------------------------
# One stage per output resolution (DATASET.OUTPUT_SIZE, lowest first); every list below has
# NUM_STAGES entries, stage k at 1/4 * 2^k of the input. Defaults: HigherHRNet-W32's recipe.
_C.LOSS.NUM_STAGES = 2
_C.LOSS.WITH_HEATMAPS_LOSS = [True, True]
_C.LOSS.HEATMAPS_LOSS_FACTOR = [1.0, 1.0]
# Also decides which stages' outputs carry tag channels (the model reads it, as the reference does).
_C.LOSS.WITH_AE_LOSS = [True, False]
# exp: push term exp(-d^2); max: max(0, 1 - |d|).
_C.LOSS.AE_LOSS_TYPE = "exp"
_C.LOSS.PUSH_LOSS_FACTOR = [0.001, 0.001]
_C.LOSS.PULL_LOSS_FACTOR = [0.001, 0.001]
# --- HAE (hierarchical associative encoding) ------------------------------------------------------
# ae: plain associative embedding; hae: keypoint-to-instance, keypoint-to-group and
# group-to-instance pull terms over the dataset's keypoint groups (DATASET.KEYPOINT_GROUPS),
# weighted by HAE_PULL_WEIGHTS (HAE's released values 0, 1.0, 1.5), with AE's push.
_C.LOSS.TAG_LOSS = "ae"
_C.LOSS.HAE_PULL_WEIGHTS = [0.0, 1.0, 1.5]
# Focal pulling: a keypoint whose tag lies outside its group's Tukey fences (FOCAL_FENCE x IQR)
# is pulled FOCAL_WEIGHT times harder.
_C.LOSS.FOCAL_PULL = False
_C.LOSS.FOCAL_FENCE = 1.5
_C.LOSS.FOCAL_WEIGHT = 2.0
# --- bottom-up regression (2020 heatmap-guided keypoint regression) -----------------------------
# Per stage: a smooth-L1 offset loss (beta 1/9, divided by the count of weighted entries) and its
# factor. Each stage gets its own factor (the reference applied entry 0 to every stage, heatmap
# factors too; its experiments give equal factors, so their numbers are the same).
_C.LOSS.WITH_OFFSETS_LOSS = [True, False]
_C.LOSS.OFFSETS_LOSS_FACTOR = [0.01, 0.01]

_C.DATASET = CN()
_C.DATASET.ROOT = "data/synthetic"
_C.DATASET.DATASET = "synthetic"
_C.DATASET.TRAIN_SET = "train"
_C.DATASET.TEST_SET = "val"
# Test on another dataset with the same keypoints (OCHuman after COCO training); '' = DATASET/ROOT.
_C.DATASET.TEST_DATASET = ""
_C.DATASET.TEST_ROOT = ""
_C.DATASET.SELECT_DATA = False
# Horizontal-flip augmentation on or off, in both paradigms. A flip, when on, happens with
# probability 0.5: HRNet's fixed draw, and the FLIP 0.5 of every HigherHRNet experiment (which
# wrote the probability itself; a file's 0.5 reads as true, 0 as false).
_C.DATASET.FLIP = True
_C.DATASET.SCALE_FACTOR = 0.25
_C.DATASET.ROT_FACTOR = 30.0
_C.DATASET.PROB_HALF_BODY = 0.0
_C.DATASET.NUM_JOINTS_HALF_BODY = 8
_C.DATASET.COLOR_RGB = False
# Pixel-to-heatmap coordinate convention: HRNet's W/S or DARK's (W-1)/(S-1).
_C.DATASET.COORD_CONVENTION = "hrnet"
# --- bottom-up (HigherHRNet) ---------------------------------------------------------------------
# Square network input (side, pixels) and one target resolution per LOSS stage, lowest first
# (INPUT_SIZE / 4 * 2^k). HigherHRNet's IMAGES_PER_GPU is TRAIN/TEST.BATCH_SIZE_PER_GPU.
# Defaults: HigherHRNet-W32 512's recipe.
_C.DATASET.INPUT_SIZE = 512
_C.DATASET.OUTPUT_SIZE = [128, 256]
# People per image: tag target slots in training, peaks kept per joint in testing.
_C.DATASET.MAX_NUM_PEOPLE = 30
# Random affine augmentation: rotation in [-MAX_ROTATION, MAX_ROTATION] degrees, scale in
# [MIN_SCALE, MAX_SCALE) of the image's short (or long) side, shift of up to MAX_TRANSLATE / 200
# of the crop side.
_C.DATASET.MAX_ROTATION = 30.0
_C.DATASET.MIN_SCALE = 0.75
_C.DATASET.MAX_SCALE = 1.5
_C.DATASET.SCALE_TYPE = "short"
_C.DATASET.MAX_TRANSLATE = 40
# Heatmap Gaussian sigma per output resolution (one per OUTPUT_SIZE entry), in output pixels; a
# negative entry means OUTPUT_SIZE / 64, HigherHRNet's SIGMA -1.
_C.DATASET.SIGMA = [2.0, 2.0]
# Per-person sigma = max(box width, height) / BASE_SIZE * BASE_SIGMA (rounded up to an integer
# with INT_SIGMA) instead of SIGMA.
_C.DATASET.SCALE_AWARE_SIGMA = False
_C.DATASET.BASE_SIZE = 256.0
_C.DATASET.BASE_SIGMA = 2.0
_C.DATASET.INT_SIGMA = False
# HAE's keypoint grouping scheme from the dataset's metadata: 'default' (COCO: face and shoulders,
# hips, each limb joint alone; CrowdPose: head, neck and shoulders, hips, ...) or, for CrowdPose,
# 'spatial_prior' / 'mutual_information' (datasets/metadata.py).
_C.DATASET.KEYPOINT_GROUPS = "default"
# --- bottom-up regression (2020 heatmap-guided keypoint regression) -----------------------------
# The person centre (an extra last joint) is the mean of the labelled joints, or the box centre
# when none is labelled or USE_BBOX_CENTER; a COCO person with an area below 32^2 has none.
_C.DATASET.USE_BBOX_CENTER = False
# Gaussian sigma of the centre channel, in output pixels (the keypoints use SIGMA).
_C.DATASET.CENTER_SIGMA = 4.0
# False reproduces the reference, which picks the centre's sigma by channel index (>= 17): on
# CrowdPose (14 joints) the centre then gets SIGMA, as the published CrowdPose models were
# trained. True gives the centre CENTER_SIGMA on every dataset (no difference on COCO).
_C.DATASET.FIX_CENTER_SIGMA = False
# Heatmap-loss weight of the pixels outside every joint's Gaussian window (1 inside), per stage;
# an entry may list one value per heatmap branch, as the reference's experiment files do.
_C.DATASET.BG_WEIGHT = [0.1, 0.025]
# Offset targets fill [int(c) - R, int(c) + R) around the truncated person centre on each axis.
_C.DATASET.OFFSET_RADIUS = 4

_C.TRAIN = CN()
_C.TRAIN.LR_FACTOR = 0.1
_C.TRAIN.LR_STEP = [90, 110]
_C.TRAIN.LR = 0.001
_C.TRAIN.OPTIMIZER = "adam"
# multistep: x LR_FACTOR at each LR_STEP epoch; cosine: down to MIN_LR_RATIO x LR at END_EPOCH.
_C.TRAIN.LR_SCHEDULER = "multistep"
_C.TRAIN.MIN_LR_RATIO = 0.01
# Linear warm-up over the first WARMUP_ITERS iterations, from WARMUP_RATIO x the scheduled rate.
_C.TRAIN.WARMUP_ITERS = 0
_C.TRAIN.WARMUP_RATIO = 0.001
_C.TRAIN.MOMENTUM = 0.9
_C.TRAIN.WD = 0.0001
_C.TRAIN.NESTEROV = False
_C.TRAIN.BEGIN_EPOCH = 0
_C.TRAIN.END_EPOCH = 140
_C.TRAIN.BATCH_SIZE_PER_GPU = 32
_C.TRAIN.SHUFFLE = True
_C.TRAIN.VAL_INTERVAL = 1
# Mixed precision (torch.amp autocast of the forward pass; losses stay in float32): "off",
# "bf16", "fp16" (with a gradient scaler), or "auto" = bf16 on CUDA GPUs with native bfloat16,
# float32 elsewhere (the CPU, older GPUs).
_C.TRAIN.AMP = "auto"
# Linear scaling rule: the rate is LR x total batch (BATCH_SIZE_PER_GPU x processes) /
# BASE_BATCH_SIZE, the total batch LR was tuned for (0: BATCH_SIZE_PER_GPU x len(GPUS)).
_C.TRAIN.AUTO_SCALE_LR = False
_C.TRAIN.BASE_BATCH_SIZE = 0
# Also write checkpoint.pth every CHECKPOINT_EVERY iterations (0: only after each epoch), so a
# killed run resumes in the middle of its epoch.
_C.TRAIN.CHECKPOINT_EVERY = 0
# Stop a diverging run: a loss above DIVERGENCE_FACTOR x its running average for
# DIVERGENCE_PATIENCE iterations in a row (0 in either turns the check off).
_C.TRAIN.DIVERGENCE_FACTOR = 100.0
_C.TRAIN.DIVERGENCE_PATIENCE = 10

_C.TEST = CN()
_C.TEST.BATCH_SIZE_PER_GPU = 32
_C.TEST.FLIP_TEST = False
_C.TEST.POST_PROCESS = False
_C.TEST.SHIFT_HEATMAP = False
# standard: argmax + quarter offset (POST_PROCESS); dark: blur, log, Taylor step (DARK).
_C.TEST.DECODER = "standard"
# Odd size of the DARK decoder's Gaussian blur (11 at 256x192, 3 at 128x96 in DARK's YAMLs).
_C.TEST.BLUR_KERNEL = 11
# Where the DARK decoder takes its Taylor step: reference: wherever the log map's Hessian at the
# peak is not singular, as DarkPose (a saddle can send a joint far off the map); negative_definite:
# only at a maximum of the log map, elsewhere the integer peak stays.
_C.TEST.DARK_STEP = "reference"
_C.TEST.USE_GT_BBOX = False
_C.TEST.IMAGE_THRE = 0.1
_C.TEST.SOFT_NMS = False
_C.TEST.OKS_THRE = 0.5
_C.TEST.IN_VIS_THRE = 0.0
_C.TEST.COCO_BBOX_FILE = ""
_C.TEST.MODEL_FILE = ""
# Library that scores COCO/CrowdPose/OCHuman keypoints: pycocotools (the reference), hotcoco (a
# Rust evaluator, same numbers as pycocotools except when a GT annotation has id 0), or auto:
# hotcoco when it is installed and gives pycocotools' numbers for the GT, else pycocotools.
_C.TEST.EVAL_BACKEND = "auto"
# What runs the forward pass in testing and inference (engine/backends.py): eager (the module),
# fused (Conv-BN folded, channels-last), onnxruntime or openvino (CPU; the model exported to
# ONNX in memory and run by that runtime).
_C.TEST.BACKEND = "eager"
# --- bottom-up (HigherHRNet) ---------------------------------------------------------------------
# Values of the HigherHRNet experiments. Test scales (must include 1: tags are read at scale 1).
_C.TEST.SCALE_FACTOR = [1.0]
# Quarter-pixel shift of each found joint towards its higher neighbour; filling of missing joints
# from the heatmaps near the person's mean tag.
_C.TEST.ADJUST = True
_C.TEST.REFINE = True
# Heatmap peaks at or below DETECTION_THRESHOLD are not candidates; a candidate joins a person
# only if the L2 tag distance is below TAG_THRESHOLD.
_C.TEST.DETECTION_THRESHOLD = 0.1
_C.TEST.TAG_THRESHOLD = 1.0
# Matching cost round(tag distance) * 100 - heatmap value instead of the tag distance alone.
_C.TEST.USE_DETECTION_VAL = True
# Skip a joint's candidates once DATASET.MAX_NUM_PEOPLE people exist.
_C.TEST.IGNORE_TOO_MUCH = False
# How detected keypoints are grouped into persons (bottom-up models only; its own key because it
# is a separate choice from TEST.DECODER, which turns a top-down heatmap into coordinates):
# fixed: HigherHRNet's associative-embedding matching, joint types in a fixed order;
# progressive: HAE's progressive associative decoding, the joint type closest in tag to a person
# found so far goes next (postprocess/progressive_grouping.py).
_C.TEST.GROUPING = "fixed"
# Solver of the grouping's assignments. munkres: the reference's choice among equal-cost
# assignments (as the munkres 1.1.4 package it calls; the rounded costs tie often); scipy:
# scipy.optimize.linear_sum_assignment, faster, same total cost, ties broken its own way.
_C.TEST.ASSIGNMENT_SOLVER = "munkres"
# Resize heatmaps and tags to the input resolution before grouping.
_C.TEST.PROJECT2IMAGE = True
# Peak finding: max-pool NMS_KERNEL x NMS_KERNEL with NMS_PADDING ((kernel - 1) / 2).
_C.TEST.NMS_KERNEL = 5
_C.TEST.NMS_PADDING = 2
# Per stage (LOSS.NUM_STAGES entries): average its heatmaps in; read its tags.
_C.TEST.WITH_HEATMAPS = [True, True]
_C.TEST.WITH_AE = [True, False]
# --- bottom-up regression (2020 heatmap-guided keypoint regression) -----------------------------
# Centre peaks (and heatmap peaks to absorb) count above KEYPOINT_THRESHOLD. Centre NMS kernel:
# 7 when the map's (h + w) / 2 exceeds POOL_THRESHOLD1, 5 above POOL_THRESHOLD2, else 3. Centre
# scores of scales other than 1 are multiplied by SCALE_DECREASE.
_C.TEST.KEYPOINT_THRESHOLD = 0.01
_C.TEST.POOL_THRESHOLD1 = 300
_C.TEST.POOL_THRESHOLD2 = 200
_C.TEST.SCALE_DECREASE = 0.001
# Pose NMS: poses with more than OVERLAP_THRESHOLD joints closer than DIST_THRESHOLD input
# pixels are duplicates; the higher centre score stays.
_C.TEST.DIST_THRESHOLD = 10.0
_C.TEST.OVERLAP_THRESHOLD = 10
# "final" result: joints within MAX_ABSORB_DISTANCE of a heatmap peak move onto it; joints
# scoring above ADJUST_THRESHOLD are then refined by a Gaussian fit in a window of
# +-GUASSIAN_KERNEL pixels starting from sigma GUASSIAN_SIGMA (the reference's key spelling).
_C.TEST.MAX_ABSORB_DISTANCE = 75.0
_C.TEST.ADJUST_THRESHOLD = 0.05
_C.TEST.GUASSIAN_KERNEL = 6
_C.TEST.GUASSIAN_SIGMA = 2.0
# The "final" result's Gaussian fit. reference: scipy curve_fit per joint on the reference's
# window and grid, quirks included (the grid is transposed for windows cut by the map border,
# joints off the map are fitted through negative-index wrap-around); corrected: every window
# in its own coordinates, joints off the map not fitted, all fits at once.
_C.TEST.GAUSSIAN_FIT = "reference"
# Reference defects, reproduced while False. FIX_ABSORB_INDEX: a joint far from every peak is
# scored with the heatmap at [int(x), int(y)] (row and column swapped); True reads [y, x].
# FIX_FLIP_UPSAMPLE: with flip, an earlier stage of the mirrored pass is up-sampled before it
# is mirrored back, landing one pixel off (the 1/4 maps of the HigherHRNet variant); True
# mirrors first.
_C.TEST.FIX_ABSORB_INDEX = False
_C.TEST.FIX_FLIP_UPSAMPLE = False

# --- rescoring (2020 heatmap-guided keypoint regression) -----------------------------------------
# A small net predicts each pose's OKS from its shape and joint scores; at test time its output
# multiplies the person score (both result sets). USE with a non-empty MODEL_FILE turns it on;
# the file is loaded once per run, strictly (tools/rescore_train.py writes one).
_C.RESCORE = CN()
_C.RESCORE.USE = True
_C.RESCORE.MODEL_FILE = ""
# Training samples (poses with their best OKS against the ground truth) that
# tools/rescore_data.py writes and tools/rescore_train.py reads (.npz).
_C.RESCORE.DATA_FILE = "data/rescore_data/rescore_dataset_train_coco_kpt.npz"
# The net's hidden width, and its training: MSE, Adam at LR, batches of BATCHSIZE (the last
# partial batch dropped), END_EPOCH epochs.
_C.RESCORE.HIDDEN_LAYER = 256
_C.RESCORE.LR = 0.001
_C.RESCORE.BATCHSIZE = 1024
_C.RESCORE.END_EPOCH = 20

_C.DEBUG = CN()
_C.DEBUG.DEBUG = False
_C.DEBUG.SAVE_BATCH_IMAGES_GT = False
_C.DEBUG.SAVE_BATCH_IMAGES_PRED = False
_C.DEBUG.SAVE_HEATMAPS_GT = False
_C.DEBUG.SAVE_HEATMAPS_PRED = False


def get_default_config() -> CN:
    """A fresh, unfrozen copy of the default tree."""
    return _C.clone()
