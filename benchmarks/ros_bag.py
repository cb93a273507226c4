"""Peak memory of ``simrecon convert rosbag`` as the recording grows (bounded memory check).

Writes ROS 2 MCAP bags of N raw rgb8 camera images (a smooth moving pattern, so the PNGs stay small), with
CameraInfo, a moving ``map -> base_link`` tf link and a static camera mount, then converts each in a
fresh process and reports the bag size, the wall time and the peak RSS of that process and of any worker
it started. The smallest bag is the in-run reference: bounded memory means the peak stays flat while the
bag grows.

    python benchmarks/ros_bag.py --frames 100 800 --width 1280 --height 720
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = """
import resource, sys, time
from simrecon.data.readers import convert
t = time.time()
log = convert("rosbag", sys.argv[1], sys.argv[2])
usage = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(len(log.frames), time.time() - t, usage)
"""


def _ros2_messages(ts, n: int, w: int, h: int):
    g = ts.types
    time_msg = g["builtin_interfaces/msg/Time"]

    def hdr(ns: int, frame: str):
        return g["std_msgs/msg/Header"](stamp=time_msg(sec=ns // 10**9, nanosec=ns % 10**9), frame_id=frame)

    def tf(ns: int, parent: str, child: str, x: float, q=(0.0, 0.0, 0.0, 1.0)):
        tr = g["geometry_msgs/msg/Transform"](translation=g["geometry_msgs/msg/Vector3"](x, 0.0, 1.5),
                                              rotation=g["geometry_msgs/msg/Quaternion"](*q))
        return g["tf2_msgs/msg/TFMessage"](transforms=[g["geometry_msgs/msg/TransformStamped"](
            header=hdr(ns, parent), child_frame_id=child, transform=tr)])

    t0 = 1_700_000_000 * 10**9
    yield "/tf_static", tf(t0, "base_link", "cam_optical", 0.0, (-0.5, 0.5, -0.5, 0.5)), t0
    yy, xx = np.mgrid[0:h, 0:w]
    roi = g["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    for i in range(n):
        ns = t0 + i * 100_000_000
        yield "/tf", tf(ns, "map", "base_link", i * 1.0), ns
        img = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, (xx + yy) % 256], -1).astype(np.uint8)
        yield "/cam/image_raw", g["sensor_msgs/msg/Image"](header=hdr(ns, "cam_optical"), height=h, width=w,
                                                           encoding="rgb8", is_bigendian=0, step=3 * w,
                                                           data=img.reshape(-1)), ns
        yield "/cam/camera_info", g["sensor_msgs/msg/CameraInfo"](
            header=hdr(ns, "cam_optical"), height=h, width=w, distortion_model="plumb_bob", d=np.zeros(5),
            k=np.array([w, 0, w / 2, 0, w, h / 2, 0, 0, 1.0]), r=np.eye(3).ravel(),
            p=np.array([w, 0, w / 2, 0, 0, w, h / 2, 0, 0, 0, 1, 0.0]), binning_x=0, binning_y=0, roi=roi), ns


def write_bag(path: Path, n: int, w: int, h: int) -> int:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    types = {"/tf_static": "tf2_msgs/msg/TFMessage", "/tf": "tf2_msgs/msg/TFMessage",
             "/cam/image_raw": "sensor_msgs/msg/Image", "/cam/camera_info": "sensor_msgs/msg/CameraInfo"}
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {t: writer.add_connection(t, typ, typestore=ts) for t, typ in types.items()}
        for topic, msg, ns in _ros2_messages(ts, n, w, h):
            writer.write(conns[topic], ns, ts.serialize_cdr(msg, types[topic]))
    return sum(f.stat().st_size for f in path.iterdir())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[100, 800])
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.frames:
            bag, out = Path(tmp) / f"bag{n}", Path(tmp) / f"out{n}"
            size = write_bag(bag, n, args.width, args.height)
            t = time.time()
            proc = subprocess.run([sys.executable, "-c", CHILD, str(bag), str(out)], capture_output=True, text=True)
            if proc.returncode:
                sys.exit(proc.stderr)
            frames, seconds, rss_kb = proc.stdout.split()
            rows.append({"frames": int(frames), "bag_MiB": size / 2**20, "convert_s": float(seconds),
                         "wall_s": time.time() - t, "peak_rss_MiB": int(rss_kb) / 1024})
            shutil.rmtree(bag)
            shutil.rmtree(out)
    print(f"{'frames':>7} {'bag MiB':>9} {'convert s':>10} {'peak RSS MiB':>13} {'x ref':>6}")
    for r in rows:
        print(f"{r['frames']:>7} {r['bag_MiB']:>9.0f} {r['convert_s']:>10.1f} {r['peak_rss_MiB']:>13.0f} "
              f"{r['peak_rss_MiB'] / rows[0]['peak_rss_MiB']:>6.2f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
