"""Reading back the frames of a video the tests wrote."""

import cv2


def read_frames(path):
    """All frames of the video at path (BGR arrays) and its frame rate."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames, fps
