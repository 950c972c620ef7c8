"""torchrun on CPU (Gloo): 2 processes train to the weights of 1 over the same total batch."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from hrpose.config import load_config
from hrpose.engine.run_dir import create_run
from hrpose.engine.trainer import validate_model
from hrpose.models import registry
from hrpose.utils.checkpoint import load_checkpoint_file
from tiny_runs import make_tiny_dataset, tiny_topdown_opts

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")
_spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)

RUN = os.path.join("synthetic", "pose_hrnet", "w16_128x96_adam_lr2e-3")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    # Seed 3 gives 6 training persons (3 per process, no DistributedSampler padding) and 5 test
    # persons (shards of 3 and 2).
    return make_tiny_dataset(tmp_path_factory, "synthetic_dist", seed=3, num_val=2)


def run_opts(data_root, output_root, batch_per_process, *extra):
    # SGD: its update is linear in the gradient, so float noise between the two gradient sums
    # stays noise (Adam's first step is lr x sign(g) and would amplify it on tiny gradients).
    return tiny_topdown_opts(data_root, output_root, "TRAIN.OPTIMIZER", "sgd", "TRAIN.LR", "0.5",
                             "TRAIN.VAL_INTERVAL", "5", "TEST.BATCH_SIZE_PER_GPU", "1", *extra,
                             train_batch=batch_per_process)


@pytest.fixture
def one_thread():
    # torchrun starts its processes with OMP_NUM_THREADS=1; the in-process runs use one thread
    # too, so a test image goes through the very same kernels in both.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def launch(command, **env):
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            cwd=worker.REPO_ROOT, env=dict(os.environ, OMP_NUM_THREADS="1", **env))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_two_processes_train_to_the_weights_of_one(tiny_data, tmp_path, monkeypatch, one_thread):
    monkeypatch.setitem(registry.MODEL_BUILDERS, "pose_hrnet", worker.tiny_builder)
    worker.train_tiny(run_opts(tiny_data, tmp_path / "one", 4))
    launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", WORKER, *run_opts(tiny_data, tmp_path / "two", 2)])

    one = load_checkpoint_file(str(tmp_path / "one" / "output" / RUN / "checkpoint.pth"))
    two = load_checkpoint_file(str(tmp_path / "two" / "output" / RUN / "checkpoint.pth"))
    # 6 persons: batches of 4 + 2 in one process, 2 + 1 per process in two; 2 epochs.
    assert one["global_step"] == two["global_step"] == 4
    assert one["total_batch_size"] == two["total_batch_size"] == 4
    assert one["learning_rate"] == two["learning_rate"] == pytest.approx(0.05)
    moved = 0.0
    torch.manual_seed(0)  # SEED 0: the trainer seeds torch so before building the model
    initial = worker.TinyPoseNet(17)
    for key, value in one["state_dict"].items():
        assert torch.allclose(value, two["state_dict"][key], rtol=1e-5, atol=1e-6), key
        moved = max(moved, (value - initial.state_dict()[key]).abs().max().item())
    assert moved > 1e-3  # the runs trained: equal weights are not just the shared init

    # Rank 0 alone wrote the run log, the config copy and tensorboard events.
    out_dir = tmp_path / "two" / "output" / RUN
    assert len(list(out_dir.glob("*_train.log"))) == 1
    assert len(list(out_dir.glob("*_train_config.yaml"))) == 1
    assert len(list((tmp_path / "two" / "log" / "synthetic" / "pose_hrnet").iterdir())) == 1

    # The 2-process validation gathered both shards: one process testing the same weights
    # writes the same results, in the same order, and gets the same AP.
    opts = run_opts(tiny_data, tmp_path / "check", 4, "TEST.MODEL_FILE",
                    str(out_dir / "final_state.pth"))
    cfg = load_config(str(worker.REPO_ROOT / worker.SYNTHETIC_CFG), opts)
    ap = validate_model(cfg, create_run(cfg, worker.SYNTHETIC_CFG, "valid"))
    results = "results/keypoints_val_results.json"
    gathered = json.loads((out_dir / results).read_text())
    single = json.loads((tmp_path / "check" / "output" / RUN / results).read_text())
    assert len(gathered) == 5 and gathered == single
    assert two["best_perf"] == ap


def test_dist_train_script_runs_the_train_tool_on_two_processes(repo_root, tiny_data, tmp_path):
    """The real narrow HRNet (BatchNorm per process) through tools/dist_train.sh, in bf16 with
    channels-last tensors."""
    opts = run_opts(tiny_data, tmp_path, 2, "TRAIN.END_EPOCH", "1", "TRAIN.LR", "0.01",
                    "TRAIN.AUTO_SCALE_LR", "True", "TRAIN.AMP", "bf16", "CHANNELS_LAST", "on")
    result = launch(["bash", "tools/dist_train.sh", worker.SYNTHETIC_CFG, "2", *opts],
                    PYTHON=sys.executable)
    # One log on the console: rank 1 prints warnings and errors only.
    assert result.stderr.count("autocast bfloat16, channels-last tensors") == 1
    assert result.stderr.count("Epoch: [0][1/2]") == 1
    # DDP's gradient buckets follow the channels-last parameters (no stride-mismatch warning).
    assert "Warning" not in result.stderr
    checkpoint = load_checkpoint_file(str(tmp_path / "output" / RUN / "checkpoint.pth"))
    assert checkpoint["epoch"] == 1 and checkpoint["global_step"] == 2
    # Linear scaling: LR 0.01 for the recipe's batch 2 x 1 GPU (GPUS [0]), run with 2 x 2.
    assert checkpoint["learning_rate"] == pytest.approx(0.02)
    assert "2 process(es) x 2 images = batch 4" in result.stderr
    assert not any(key.startswith("module.") for key in checkpoint["state_dict"])


def test_dist_train_script_without_arguments_prints_its_usage(repo_root):
    result = subprocess.run(["bash", "tools/dist_train.sh"], capture_output=True, text=True,
                            cwd=repo_root)
    assert result.returncode == 2 and "usage" in result.stderr and "CONFIG GPUS" in result.stderr
