"""The example brainset: synthetic center-out reaching sessions, NWB in, temporaldata out.

``download`` stands in for an archive download: instead of fetching a file it
synthesizes a small NWB file per session (sorted units with spike times, cursor
position and velocity, a trial table), deterministically from the session's manifest
row, so the example runs offline and gives the same files every time. ``process``
is what a real brainset does: it reads the NWB with pynwb and writes one temporaldata
``Data`` HDF5 per session, with spikes, units, behaviour, trials, the session's domain,
descriptions, and train/valid/test splits.

Copy this folder to start a brainset of your own: only ``download`` changes when the
data comes from an archive.
"""

from __future__ import annotations

import datetime
import warnings
import zlib
from argparse import ArgumentParser, Namespace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from pynwb import NWBHDF5IO, NWBFile, TimeSeries
from pynwb.behavior import BehavioralTimeSeries, Position, SpatialSeries
from pynwb.file import Subject
from temporaldata import ArrayDict, Data, Interval, IrregularTimeSeries

from brainsets_kedro import BrainsetPipeline

parser = ArgumentParser(description="Synthetic center-out reaching sessions.")
parser.add_argument("--n-sessions", type=int, default=4, help="sessions to prepare")
parser.add_argument("--redownload", action="store_true", help="rewrite existing NWB")
parser.add_argument("--reprocess", action="store_true", help="rewrite existing .h5")

SAMPLING_RATE = 100.0  # Hz, behaviour
TARGET_RADIUS = 8.0  # cm
N_TARGETS = 8
SUBJECTS = ("monkey_c", "monkey_j")


class Pipeline(BrainsetPipeline):
    brainset_id = "my_brainset"
    parser = parser
    args: Namespace  # parsed from the parser above: never None here

    @classmethod
    def get_manifest(cls, raw_dir: Path, args) -> pd.DataFrame:
        sessions = [f"sess_{i:02d}" for i in range(1, args.n_sessions + 1)]
        first_day = datetime.date(2024, 3, 4)
        return pd.DataFrame(
            {
                "subject_id": [
                    SUBJECTS[i % len(SUBJECTS)] for i in range(len(sessions))
                ],
                "recording_date": [
                    (first_day + datetime.timedelta(days=7 * i)).isoformat()
                    for i in range(len(sessions))
                ],
                "n_units": [24 + 4 * (i % 3) for i in range(len(sessions))],
                "duration_s": 120.0,
                "filename": [f"{session}.nwb" for session in sessions],
            },
            index=pd.Index(sessions, name="session_id"),
        ).assign(
            # The download's size, as an archive's index gives it (here, about what
            # synthesize_session writes): the run checks that the sizes fit on the
            # disk before the first download.
            size_bytes=lambda manifest: 850_000 + 7_000 * manifest.n_units
        )

    def download(self, manifest_item) -> Path:
        path = self.raw_dir / manifest_item.filename
        if path.exists() and not self.args.redownload:
            self.update_status("Skipped download")
            return path
        # A real brainset fetches the file from its archive here.
        self.update_status("DOWNLOADING (synthesizing NWB)")
        nwbfile = synthesize_session(manifest_item)
        with self.atomic_write(path) as tmp, warnings.catch_warnings():
            # The temporary name does not end in .nwb (so that *.nwb globs never
            # list a half-written file), which pynwb warns about.
            warnings.filterwarnings("ignore", message=".*does not end in '.nwb'")
            with NWBHDF5IO(tmp, "w") as io:
                io.write(nwbfile)
        return path

    def process(self, download_output: Path) -> None:
        session_id = download_output.stem
        store_path = self.processed_dir / f"{session_id}.h5"
        if store_path.exists() and not self.args.reprocess:
            self.update_status("Skipped processing")
            return

        self.update_status("Loading NWB")
        with NWBHDF5IO(download_output, "r") as io:
            nwbfile = io.read()
            self.update_status("Extracting spikes")
            spikes, units = extract_spikes(nwbfile)
            self.update_status("Extracting behaviour")
            cursor = extract_cursor(nwbfile)
            trials = extract_trials(nwbfile)
            subject = nwbfile.subject
            data = Data(
                brainset=Data(
                    id=self.brainset_id,
                    origin_version="synthetic",
                    derived_version="1.0.0",
                    source="synthesized offline by brainsets_kedro's example brainset",
                    description="Synthetic center-out reaching: cosine-tuned units "
                    "recorded while a cursor reaches to one of eight targets.",
                ),
                subject=Data(
                    id=subject.subject_id, species=subject.species, sex=subject.sex
                ),
                session=Data(
                    id=session_id,
                    recording_date=nwbfile.session_start_time.isoformat(),
                    task="center_out_reaching",
                ),
                device=Data(
                    id=f"{subject.subject_id}_array", recording_tech="UTAH_ARRAY"
                ),
                spikes=spikes,
                units=units,
                cursor=cursor,
                trials=trials,
                domain=cursor.domain,
            )

        self.update_status("Creating splits")
        valid, test = split_trials(trials, seed=zlib.crc32(session_id.encode()))
        data.train_domain = data.domain.difference((valid | test).dilate(1.0))
        data.valid_domain = valid
        data.test_domain = test

        self.update_status("Storing")
        with self.atomic_write(store_path) as tmp, h5py.File(tmp, "w") as file:
            data.to_hdf5(file)


def synthesize_session(item) -> NWBFile:
    """A center-out reaching session: trials, a cursor moving along minimum-jerk
    reaches, and units whose firing is cosine-tuned to the cursor's velocity.
    Deterministic: the random generator is seeded by the session id."""
    rng = np.random.default_rng(zlib.crc32(item.Index.encode()))
    start = datetime.datetime.fromisoformat(item.recording_date)
    nwbfile = NWBFile(
        session_description=f"synthetic center-out reaching session {item.Index}",
        identifier=f"{item.Index}-{zlib.crc32(item.Index.encode()):08x}",
        session_start_time=start.replace(hour=10, tzinfo=datetime.timezone.utc),
        subject=Subject(subject_id=item.subject_id, species="Macaca mulatta", sex="M"),
    )

    timestamps = np.arange(0.0, item.duration_s, 1.0 / SAMPLING_RATE)
    trials = plan_trials(rng, item.duration_s)
    pos = np.zeros((len(timestamps), 2))
    for trial in trials:
        if trial["result"] == "success":
            target = TARGET_RADIUS * np.array(
                [np.cos(trial["angle"]), np.sin(trial["angle"])]
            )
            out = minimum_jerk(timestamps, trial["move_time"], 0.5)
            back = minimum_jerk(timestamps, trial["move_time"] + 1.0, 0.5)
            pos += np.outer(out - back, target)
    pos += rng.normal(0.0, 0.05, pos.shape)  # sensor noise
    vel = np.asarray(np.gradient(pos, timestamps, axis=0))

    behavior = nwbfile.create_processing_module("behavior", "cursor kinematics")
    behavior.add(
        Position(
            spatial_series=SpatialSeries(
                name="cursor_pos",
                data=pos,
                timestamps=timestamps,
                reference_frame="screen center, cm",
                unit="cm",
            )
        )
    )
    behavior.add(
        BehavioralTimeSeries(
            name="Velocity",
            time_series=TimeSeries(
                name="cursor_vel", data=vel, timestamps=timestamps, unit="cm/s"
            ),
        )
    )

    for name, description in (
        ("target_id", "index of the target, 0 to 7 counterclockwise from the right"),
        ("go_cue_time", "time of the go cue, s"),
        ("result", "success, or fail when no reach was made"),
    ):
        nwbfile.add_trial_column(name=name, description=description)
    for trial in trials:
        nwbfile.add_trial(
            start_time=trial["start"],
            stop_time=trial["stop"],
            target_id=trial["target_id"],
            go_cue_time=trial["go_cue"],
            result=trial["result"],
        )

    preferred = rng.uniform(0.0, 2 * np.pi, item.n_units)
    baseline = rng.uniform(2.0, 15.0, item.n_units)
    gain = rng.uniform(0.5, 2.0, item.n_units)
    direction = np.arctan2(vel[:, 1], vel[:, 0])
    speed = np.hypot(vel[:, 0], vel[:, 1])
    for unit in range(item.n_units):
        rate = baseline[unit] + gain[unit] * speed * np.cos(direction - preferred[unit])
        counts = rng.poisson(np.clip(rate, 0.0, None) / SAMPLING_RATE)
        spike_times = np.repeat(timestamps, counts) + rng.uniform(
            0.0, 1.0 / SAMPLING_RATE, counts.sum()
        )
        nwbfile.add_unit(spike_times=np.sort(spike_times), id=unit)
    return nwbfile


def plan_trials(rng: np.random.Generator, duration: float) -> list[dict]:
    """Back-to-back trials of about three seconds until the session ends."""
    trials, start = [], 0.5
    while start + 3.5 < duration:
        target_id = int(rng.integers(N_TARGETS))
        go_cue = start + rng.uniform(0.5, 1.0)
        trials.append(
            {
                "start": start,
                "stop": go_cue + 2.0,
                "target_id": target_id,
                "angle": 2 * np.pi * target_id / N_TARGETS,
                "go_cue": go_cue,
                "move_time": go_cue + rng.uniform(0.2, 0.35),
                "result": "success" if rng.random() < 0.9 else "fail",
            }
        )
        start = go_cue + 2.0 + rng.uniform(0.2, 0.5)
    return trials


def minimum_jerk(t: np.ndarray, onset: float, duration: float) -> np.ndarray:
    """Goes smoothly from 0 to 1 between ``onset`` and ``onset + duration``."""
    s = np.clip((t - onset) / duration, 0.0, 1.0)
    return 10 * s**3 - 15 * s**4 + 6 * s**5


def extract_spikes(nwbfile: NWBFile) -> tuple[IrregularTimeSeries, ArrayDict]:
    units = nwbfile.units.to_dataframe()
    unit_ids = [f"unit_{unit_id:03d}" for unit_id in units.index]
    times = [np.asarray(spike_times) for spike_times in units.spike_times]
    spikes = IrregularTimeSeries(
        timestamps=np.concatenate(times),
        unit_index=np.repeat(np.arange(len(times)), [len(t) for t in times]),
        domain="auto",
    )
    spikes.sort()
    return spikes, ArrayDict(id=np.array(unit_ids))


def extract_cursor(nwbfile: NWBFile) -> IrregularTimeSeries:
    behavior = nwbfile.processing["behavior"]
    pos = behavior["Position"]["cursor_pos"]
    return IrregularTimeSeries(
        timestamps=pos.timestamps[:],
        pos=pos.data[:],
        vel=behavior["Velocity"]["cursor_vel"].data[:],
        domain="auto",
    )


def extract_trials(nwbfile: NWBFile) -> Interval:
    table = nwbfile.trials.to_dataframe()
    return Interval(
        start=table.start_time.to_numpy(),
        end=table.stop_time.to_numpy(),
        target_id=table.target_id.to_numpy(dtype=np.int64),
        go_cue_time=table.go_cue_time.to_numpy(dtype=np.float64),
        is_valid=(table.result == "success").to_numpy(),
    )


def split_trials(trials: Interval, seed: int) -> tuple[Interval, Interval]:
    """Valid (successful) trials shuffled into 10% valid and 20% test trials; the
    rest of the session, away from those, is for training."""
    order = np.random.default_rng(seed).permutation(np.flatnonzero(trials.is_valid))
    n_valid, n_test = round(0.1 * len(order)), round(0.2 * len(order))
    valid, test = np.zeros((2, len(trials)), dtype=bool)
    valid[order[:n_valid]] = True
    test[order[n_valid : n_valid + n_test]] = True
    return trials.select_by_mask(valid), trials.select_by_mask(test)
