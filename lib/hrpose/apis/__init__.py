"""High-level inference: PosePredictor (one picture -> persons), person box sources, the video demo.

    from hrpose.apis import PosePredictor
    predictor = PosePredictor.from_config("experiments/....yaml", "model.pth")
    persons = predictor(cv2.imread("people.jpg"), boxes=[[x, y, w, h]])  # BGR in, image pixels out
"""

from .boxes import DetectionFile, TorchvisionPersonDetector, person_box_source
from .frames import open_frame_source
from .predictor import Person, PosePredictor, Prediction
from .tracking import OneEuroFilter, PoseTracker, TrackSmoother
from .video import DemoOutputs, run_inference_demo

__all__ = ["DemoOutputs", "DetectionFile", "OneEuroFilter", "Person", "PosePredictor",
           "PoseTracker", "Prediction", "TorchvisionPersonDetector", "TrackSmoother",
           "open_frame_source", "person_box_source", "run_inference_demo"]
