"""The stand-in for real 4D-OR (``real_format=true``): the real download's files only, read back as real 4D-OR."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from or_synth.data import FourDORDataset
from or_synth.data.annotations import read_instance_mask
from or_synth.data.images import frame_index, take_dir
from or_synth.data.layout_maps import RealLayouts, view_layout
from or_synth.data.panoptic import PANOPTIC_LABELS, panoptic_path
from or_synth.data.poses import JOINTS, read_calibration, read_poses
from or_synth.data.scene_graph import load_scene_graphs
from or_synth.data.views import load_views
from or_synth.evaluation.pairs import has_boxes
from or_synth.render.pipeline import MANIFEST
from or_synth.render.room import make_cameras
from tests.helpers import all_files, render_small


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("standin") / "4D-OR"
    render_small(root, "real_format=true")
    return root


def test_takes_hold_exactly_the_real_downloads_files(standin):
    take = take_dir(standin, 1)
    expected = {"colorimage", "annotations", "segmentation_export_1", "segmentation_export_2",
                "segmentation_export_5", "2D_keypoint_annotations.json", "timestamp_to_pcd_and_frames_list.json",
                *(f"camera0{c}.json" for c in range(1, 7))}  # fmt: skip
    assert {p.name for p in take.iterdir()} == expected
    assert len(list((take / "segmentation_export_2").glob("camera02_colorimage-*.png"))) == 8
    assert {p.name for p in standin.iterdir()} >= {"relationships_train.json", "phases", MANIFEST}


def test_same_pictures_as_the_rendered_dataset_and_panoptic_maps_name_its_nodes(standin, small_render):
    ours, theirs = all_files(standin), all_files(small_render)
    images = [k for k in theirs if "/colorimage/" in k]
    assert images and all(ours[k] == theirs[k] for k in images)
    graphs = load_scene_graphs(standin / "relationships_train.json")
    real = RealLayouts(standin)
    agree = total = 0
    for record in graphs.records[:4]:
        frame = frame_index(standin, 1).frame_id(record.scan, 1)
        panoptic = np.asarray(Image.open(panoptic_path(standin, 1, 1, frame)))
        assert set(np.unique(panoptic).tolist()) <= set(PANOPTIC_LABELS)
        labels = real.view_of(1, record.scan, list(record.object_names), list(record.roles), 1, frame)
        truth = read_instance_mask(small_render, 1, 1, frame)
        named = (labels > 0) & (labels < 255)
        agree += int((labels[named] == truth[named]).sum())
        total += int(named.sum())
    assert total > 0 and agree == total  # every pixel the panoptic map gives a node is that node's


def test_poses_and_keypoints_are_the_people_of_the_graph(standin):
    graphs = load_scene_graphs(standin / "relationships_train.json")
    record = graphs.records[3]
    people = read_poses(standin, 1, record.scan)
    humans = {n for n in record.object_names if n.startswith("human_") or n == "Patient"}
    assert set(people) == humans and all(j.shape == (len(JOINTS), 3) for j in people.values())
    keypoints = json.loads((take_dir(standin, 1) / "2D_keypoint_annotations.json").read_text())
    with_people = [i for i in range(8) if read_poses(standin, 1, f"{i:06d}")]
    assert len(with_people) > 0 and set(keypoints) == {
        f"{i:06d}_{c}" for i in with_people for c in range(1, 7)
    }
    assert all(len(person["keypoints"]) == 3 * len(JOINTS) for v in keypoints.values() for person in v)
    # The calibration the loader reads projects like the renderer's camera (millimetres vs metres).
    camera = make_cameras(64, 48, np.random.default_rng([0, 1, 1_000_003]), 0.08)[3]
    calibration = read_calibration(standin, 1, 3)
    points = np.array([[0.5, 0.2, 1.0], [-1.0, 1.0, 0.3]])
    assert np.allclose(calibration.project(points * 1000)[0], camera.project(points)[0], atol=1e-6)


def test_loader_reads_it_as_real_4d_or_with_layouts_where_the_annotations_give_them(standin, tmp_path):
    dataset = FourDORDataset(standin, "train", load_images=True, image_size=(48, 64), processed_root=tmp_path)
    views = load_views(dataset, progress=False)
    # Cameras 1, 2, 5: the panoptic maps; 3, 4, 6: boxes of the posed people, where the scan has any.
    panoptic = torch.isin(views.cameras, torch.tensor([1, 2, 5]))
    assert views.has_layout[panoptic].all()
    posed = torch.tensor([bool(read_poses(standin, int(g.take), g.scan)) for g in views.graphs])
    assert torch.equal(views.has_layout[~panoptic], posed[views.graph_index[~panoptic]])
    graph = views.graphs[int(posed.nonzero()[0])]
    box_view = view_layout(standin, graph, 3, frame_index(standin, 1).frame_id(graph.scan, 3))
    people = {k + 1 for k, role in enumerate(graph.node_role.tolist()) if role < 5}  # Patient and the staff
    assert set(np.unique(box_view).tolist()) - {0} <= people
    assert has_boxes(standin) and not has_boxes(tmp_path)


def test_asking_for_layouts_a_download_lacks_names_the_panoptic_zip(standin, tmp_path):
    import shutil

    bare = tmp_path / "4D-OR"
    shutil.copytree(
        standin, bare, ignore=shutil.ignore_patterns("segmentation_export_*", "annotations", "processed")
    )
    dataset = FourDORDataset(
        bare, "train", load_images=True, image_size=(48, 64), processed_root=tmp_path / "p"
    )
    assert load_views(dataset, progress=False).masks is None  # auto: graph-only
    with pytest.raises(FileNotFoundError, match="4D-OR_panoptic_segmentations.zip"):
        load_views(dataset, masks=True, progress=False)


def test_the_official_loaders_indexing_finds_every_file_of_a_scan(standin):
    """4D-OR's image lookup (the frame list's color_{c} ids), MM-OR's mask lookup (the image's stem under
    segmentation_export_{c}) and VoxelPose's pose lookup (the entry's pcd name under annotations/)."""
    from tests.helpers import official_4dor_images

    frames = json.loads((take_dir(standin, 4) / "timestamp_to_pcd_and_frames_list.json").read_text())
    for index in range(len(frames)):
        paths, images = official_4dor_images(standin, f"4_{index:06d}")
        assert [image.size for image in images] == [(64, 48)] * 6
        for camera in (1, 2, 5):
            mask = (
                paths[camera - 1].parent.parent
                / f"segmentation_export_{camera}"
                / (paths[camera - 1].stem + ".png")
            )
            assert Image.open(mask).size == (64, 48)
        poses = json.loads(
            (take_dir(standin, 4) / "annotations" / f"{frames[index][1]['pcd']}.json").read_text()
        )
        assert {label["jointName"] for label in poses["labels"]} <= set(JOINTS)


def test_an_unknown_panoptic_id_stops_the_loader_or_is_listed_with_strict_false(standin, tmp_path, caplog):
    import shutil

    from or_synth.data import DatasetFormatError

    root = tmp_path / "4D-OR"
    shutil.copytree(standin, root, ignore=shutil.ignore_patterns("processed"))
    frame = frame_index(root, 1).frame_id("000002", 1)
    path = panoptic_path(root, 1, 1, frame)
    panoptic = np.asarray(Image.open(path)).copy()
    panoptic[:2, :2] = 21  # not an MM-OR id
    Image.fromarray(panoptic).save(path)
    strict = FourDORDataset(
        root, "train", load_images=True, image_size=(48, 64), processed_root=tmp_path / "a"
    )
    with pytest.raises(DatasetFormatError, match="unknown label id") as caught:
        load_views(strict, progress=False)
    assert f"file {path}, take 1, scan 000002, field camera 1" in str(caught.value)
    lenient = FourDORDataset(root, "train", load_images=True, image_size=(48, 64), strict=False,
                             processed_root=tmp_path / "b")  # fmt: skip
    views = load_views(lenient, progress=False)
    assert len(views.layout_notes) == 1
    assert views.layout_notes[0].startswith(
        "take 1 scan 000002 camera 1: label 21 (unknown): unknown label id"
    )
    assert "1 panoptic label(s) matched no node" in caplog.text
