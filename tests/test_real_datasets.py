"""Real-image datasets: MedScribble, NIfTI manifests, image folders, and their simulator sessions."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from probseg.data import Example, load_image_folder, load_medscribble, load_nifti_manifest
from simulator.cli import main as simulate_main
from simulator.datasets import RealSessions, make_dataset
from simulator.runner import RunSettings, run
from simulator.session import SessionConfig

MEDSCRIBBLE = Path(__file__).resolve().parents[2] / "shared" / "medscribble"
TASKS = ["ACDC", "BTCV", "CAMUS", "HipXRay", "OASIS", "OCTA500", "STARE", "WBC"]
HEADER = "image,label,label_values,axis,slices\n"

needs_medscribble = pytest.mark.skipif(not MEDSCRIBBLE.is_dir(), reason=f"{MEDSCRIBBLE} not present")


# --- MedScribble -------------------------------------------------------------------------------


@needs_medscribble
def test_medscribble_counts_shapes_and_dtypes():
    examples = load_medscribble(MEDSCRIBBLE)
    assert len(examples) == 39
    assert sorted({e.task for e in examples}) == TASKS
    assert sum(len(e.scribbles) for e in examples) == 117
    assert [e.example_id for e in examples] == sorted(e.example_id for e in examples)
    assert len({e.example_id for e in examples}) == 39
    for e in examples:
        assert e.example_id.startswith(e.task + "/") and e.example_id.count("/") == 2
        assert e.image.dtype == np.float32 and e.image.shape == (256, 256)
        assert 0.0 <= e.image.min() and e.image.max() <= 1.0
        assert e.target.dtype == bool and e.target.shape == (256, 256) and e.target.any()
        assert e.annotators == ["0", "1", "2"]
        for pos, neg in e.scribbles:
            assert pos.dtype == bool and neg.dtype == bool and pos.shape == (256, 256)
            assert not (pos & neg).any() and (pos | neg).any()


@needs_medscribble
def test_medscribble_task_filter_and_unknown_task():
    examples = load_medscribble(MEDSCRIBBLE, tasks=["WBC", "ACDC"])
    assert len(examples) == 10 and {e.task for e in examples} == {"ACDC", "WBC"}
    with pytest.raises(ValueError, match=r"tasks: unknown task 'wbc'.*ACDC, BTCV.*WBC"):
        load_medscribble(MEDSCRIBBLE, tasks=["wbc"])


def _medscribble_example(root: Path, seg: np.ndarray | None = None, scribble: np.ndarray | None = None) -> Path:
    folder = root / "Task" / "sub" / "ex1"
    folder.mkdir(parents=True)
    np.save(folder / "img.npy", np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8))
    if seg is None:
        seg = np.zeros((8, 8), np.float32)
        seg[2:5, 2:5] = 1
    np.save(folder / "seg.npy", seg)
    if scribble is not None:
        np.save(folder / "scribble_0.npy", scribble)
    return folder


def test_medscribble_without_scribbles_and_overlapping_strokes(tmp_path):
    _medscribble_example(tmp_path / "a")
    (e,) = load_medscribble(tmp_path / "a")
    assert e.scribbles == [] and e.example_id == "Task/sub/ex1" and e.target.sum() == 9
    s = np.zeros((2, 8, 8), np.float32)
    s[0, 3, 3], s[1, 0, 0] = 1.0, 1.0
    s[0, 6, 6], s[1, 6, 6] = 0.6, 0.9  # anti-aliased overlap: the stronger stroke wins
    _medscribble_example(tmp_path / "b", scribble=s)
    ((pos, neg),) = load_medscribble(tmp_path / "b")[0].scribbles
    assert pos.sum() == 1 and pos[3, 3] and neg[0, 0] and neg[6, 6] and not pos[6, 6]


@pytest.mark.parametrize(
    "case, word",
    [
        ("missing-seg", "seg.npy: file not found"),
        ("shape", "seg.npy: shape"),
        ("empty", "seg.npy: empty target"),
        ("corrupt", "seg.npy: unreadable"),
        ("scribble-shape", "scribble_0.npy: expected scribbles of shape"),
        ("scribble-empty", "scribble_0.npy: no scribble pixel"),
        ("no-folder", "MedScribble folder not found"),
    ],
)
def test_medscribble_bad_data_names_the_file(tmp_path, case, word):
    if case == "no-folder":
        with pytest.raises(ValueError, match=word):
            load_medscribble(tmp_path / "nothing")
        return
    scribble = {"scribble-shape": np.ones((2, 4, 4), np.float32), "scribble-empty": np.zeros((2, 8, 8), np.float32)}
    folder = _medscribble_example(tmp_path, scribble=scribble.get(case))
    if case == "missing-seg":
        (folder / "seg.npy").unlink()
    elif case == "shape":
        np.save(folder / "seg.npy", np.ones((4, 4), np.float32))
    elif case == "empty":
        np.save(folder / "seg.npy", np.zeros((8, 8), np.float32))
    elif case == "corrupt":
        (folder / "seg.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match=word):
        load_medscribble(tmp_path)


# --- NIfTI --------------------------------------------------------------------------------------

SHAPE = (20, 30, 10)
SPACING = (1.0, 2.0, 3.0)


def _save(path: Path, data: np.ndarray, spacing: tuple[float, float, float] = SPACING) -> None:
    nib.save(nib.Nifti1Image(data, np.diag([*spacing, 1.0])), str(path))


@pytest.fixture()
def volumes(tmp_path: Path) -> Path:
    """ct.nii.gz (float32) and seg.nii.gz (int16: label 71 in slices 2-4, 72 in 3-6 along axis 2)."""
    rng = np.random.default_rng(0)
    image = rng.normal(100.0, 10.0, SHAPE).astype(np.float32)
    image[0, 0, 0] = 1e6  # an outlier the percentile window must ignore
    label = np.zeros(SHAPE, np.int16)
    label[4:10, 5:15, 2:5] = 71
    label[12:16, 18:20, 3:7] = 72
    label[15, 25, 8] = 72  # a one-voxel slice
    _save(tmp_path / "ct.nii.gz", image)
    _save(tmp_path / "seg.nii.gz", label)
    return tmp_path


def _manifest(folder: Path, *rows: str, header: str = HEADER) -> Path:
    path = folder / "manifest.csv"
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


@pytest.mark.parametrize("axis, shape", [(2, (20, 60)), (0, (30, 15)), (1, (20, 30))])
def test_nifti_slices_are_resampled_to_square_pixels(volumes, axis, shape):
    (e,) = load_nifti_manifest(_manifest(volumes, f"ct.nii.gz,seg.nii.gz,71;72,{axis},largest"))
    assert e.image.shape == shape and e.target.shape == shape
    assert e.image.dtype == np.float32 and e.target.dtype == bool and e.target.any()
    assert 0.0 <= e.image.min() and e.image.max() <= 1.0
    assert np.percentile(e.image, 90) < 0.99  # the outlier did not squash the window
    assert np.percentile(e.image, 10) > 0.01
    assert e.scribbles == [] and e.task == "ct" and e.target_name == "label-71+72"


def test_nifti_label_union_largest_all_and_explicit(volumes):
    rows = [
        "ct.nii.gz,seg.nii.gz,71,2,largest",
        "ct.nii.gz,seg.nii.gz,71;72,2,largest",
        "ct.nii.gz,seg.nii.gz,72,2,all:2",
        "ct.nii.gz,seg.nii.gz,71;72,2,5;2",
    ]
    examples = load_nifti_manifest(_manifest(volumes, *rows))
    ids = [(e.example_id, e.target_name) for e in examples]
    assert ids == [
        ("ct:axis2:slice2", "label-71"),
        ("ct:axis2:slice3", "label-71+72"),  # 60 + 8 voxels: the largest union slice
        ("ct:axis2:slice3", "label-72"), ("ct:axis2:slice4", "label-72"),
        ("ct:axis2:slice5", "label-72"), ("ct:axis2:slice6", "label-72"),  # slice 8 has 1 voxel < 2
        ("ct:axis2:slice2", "label-71+72"), ("ct:axis2:slice5", "label-71+72"),
    ]
    # Axis 1 is upsampled by 2 (spacing 2 -> 1) with nearest labels: counts double exactly.
    assert examples[0].target.sum() == 2 * 60
    assert examples[1].target.sum() == 2 * (60 + 8)
    assert examples[7].target.sum() == 2 * 8


@pytest.mark.parametrize(
    "row, word",
    [
        ("nope.nii.gz,seg.nii.gz,71,2,largest", r"row 2, column image: .*nope\.nii\.gz: file not found"),
        ("ct.nii.gz,small.nii.gz,71,2,largest", r"small\.nii\.gz: shape \(20, 30, 9\) differs"),
        ("ct.nii.gz,seg.nii.gz,99,2,largest", r"seg\.nii\.gz: label value 99 not present"),
        ("ct.nii.gz,seg.nii.gz,71,2,3;10", r"manifest\.csv: row 2, column slices: slice 10 out of range"),
        ("ct.nii.gz,seg.nii.gz,71,2,8", r"seg\.nii\.gz.*slice 8 on axis 2 holds no voxel of label 71"),
        ("ct.nii.gz,seg.nii.gz,71,2,all:1000", r"seg\.nii\.gz.*no slice on axis 2 has >= 1000"),
        ("ct.nii.gz,seg.nii.gz,71,3,largest", r"manifest\.csv: row 2, column axis"),
        ("ct.nii.gz,seg.nii.gz,seventy,2,largest", r"manifest\.csv: row 2, column label_values"),
        ("ct.nii.gz,seg.nii.gz,71,2,middle", r"manifest\.csv: row 2, column slices"),
        ("ct.nii.gz,seg.nii.gz,71,2", r"manifest\.csv: row 2: expected 5 cells"),
        ("junk.nii.gz,seg.nii.gz,71,2,largest", r"junk\.nii\.gz: unreadable NIfTI"),
    ],
)
def test_nifti_bad_data_names_the_file(volumes, row, word):
    _save(volumes / "small.nii.gz", np.zeros((20, 30, 9), np.int16))
    (volumes / "junk.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ValueError, match=word):
        load_nifti_manifest(_manifest(volumes, row))


def test_nifti_bad_header_missing_manifest_and_duplicates(volumes):
    with pytest.raises(ValueError, match=r"manifest\.csv: header must be exactly image,label,label_values,axis,slices"):
        load_nifti_manifest(_manifest(volumes, "ct.nii.gz,seg.nii.gz,71,2,largest", header="img,lbl,v,a,s\n"))
    with pytest.raises(ValueError, match=r"missing\.csv: manifest not found"):
        load_nifti_manifest(volumes / "missing.csv")
    with pytest.raises(ValueError, match=r"row 3 repeats ct:axis2:slice2 label-71 of row 2"):
        load_nifti_manifest(_manifest(volumes, *["ct.nii.gz,seg.nii.gz,71,2,2"] * 2))


# --- image folders ------------------------------------------------------------------------------


def _folder(root: Path) -> Path:
    """a.png (RGB) + a.png mask (0/255); b.npy + b.npy bool mask + two annotators' scribbles."""
    for sub in ("images", "masks", "scribbles"):
        (root / sub).mkdir(parents=True)
    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[..., 0] = np.arange(16, dtype=np.uint8)[None] * 10
    Image.fromarray(rgb).save(root / "images" / "a.png")
    mask = np.zeros((12, 16), np.uint8)
    mask[3:6, 4:9] = 255
    Image.fromarray(mask).save(root / "masks" / "a.png")
    np.save(root / "images" / "b.npy", np.arange(80, dtype=np.float64).reshape(8, 10) * 1000.0)
    bmask = np.zeros((8, 10), bool)
    bmask[1:4, 1:4] = True
    np.save(root / "masks" / "b.npy", bmask)
    for annotator in ("0", "1"):
        s = np.zeros((2, 8, 10), np.float32)
        s[0, 2, 2], s[1, 7, 9] = 1.0, 1.0
        np.save(root / "scribbles" / f"b_{annotator}.npy", s)
    return root


def test_image_folder_png_and_npy(tmp_path):
    a, b = load_image_folder(_folder(tmp_path / "mydata"))
    assert (a.task, a.example_id, b.example_id) == ("mydata", "mydata/a", "mydata/b")
    assert a.image.shape == (12, 16) and a.image.dtype == np.float32 and a.target.sum() == 15
    assert a.image.min() == 0.0 and a.image.max() == 1.0 and np.all(np.diff(a.image[0]) >= 0)
    assert a.scribbles == []
    assert b.image.shape == (8, 10) and b.target.sum() == 9 and b.annotators == ["0", "1"]
    pos, neg = b.scribbles[0]
    assert pos[2, 2] and neg[7, 9] and pos.sum() == 1 and neg.sum() == 1


@pytest.mark.parametrize(
    "case, word",
    [
        ("missing-mask", r"masks/a\.png \(or \.npy\): file not found"),
        ("orphan-mask", r"masks/c\.npy: no image of that name"),
        ("shape", r"masks/b\.npy: shape \(4, 4\) differs"),
        ("empty", r"masks/b\.npy: empty target"),
        ("corrupt", r"images/a\.png: unreadable image"),
        ("unsupported", r"images/notes\.txt: not a \.png or \.npy file"),
        ("scribble-name", r"scribbles/zzz_0\.npy: expected scribbles/<image name>_<annotator>\.npy"),
        ("no-masks", r"masks: folder not found"),
    ],
)
def test_image_folder_bad_data_names_the_file(tmp_path, case, word):
    root = _folder(tmp_path / "d")
    if case == "missing-mask":
        (root / "masks" / "a.png").unlink()
    elif case == "orphan-mask":
        np.save(root / "masks" / "c.npy", np.ones((2, 2), bool))
    elif case == "shape":
        np.save(root / "masks" / "b.npy", np.ones((4, 4), bool))
    elif case == "empty":
        np.save(root / "masks" / "b.npy", np.zeros((8, 10), bool))
    elif case == "corrupt":
        (root / "images" / "a.png").write_bytes(b"\x89PNG broken")
    elif case == "unsupported":
        (root / "images" / "notes.txt").write_text("x")
    elif case == "scribble-name":
        np.save(root / "scribbles" / "zzz_0.npy", np.zeros((2, 8, 10), np.float32))
    elif case == "no-masks":
        for p in (root / "masks").iterdir():
            p.unlink()
        (root / "masks").rmdir()
    with pytest.raises(ValueError, match=word):
        load_image_folder(root)


# --- simulator datasets -------------------------------------------------------------------------


@needs_medscribble
def test_human_start_gives_one_session_per_annotator():
    name = f"medscribble:{MEDSCRIBBLE}?tasks=WBC"
    human = make_dataset(name, start="human")
    assert isinstance(human, RealSessions) and human.has_human_scribbles and len(human) == 15
    cases = [human.case(i, 0) for i in range(len(human))]
    assert [c.target_id for c in cases[:3]] == ["annotator-0", "annotator-1", "annotator-2"]
    assert len({c.image_id for c in cases}) == 5 and all(c.task == "WBC" for c in cases)
    assert cases[0].image_id == "medscribble/WBC/CV/004_axis0_midslice"
    for c in cases:
        pos, neg = c.human_scribbles
        assert pos.dtype == bool and pos.shape == c.image.shape == (256, 256) and c.target.dtype == bool
    assert len(make_dataset(name, n_sessions=4, start="human")) == 4
    clicks = make_dataset(name, start="clicks")
    assert len(clicks) == 5 and clicks.case(0, 0).human_scribbles is None and clicks.case(0, 0).target_id == "target"
    assert len(make_dataset(f"medscribble:{MEDSCRIBBLE}", start="human")) == 117


@needs_medscribble
def test_cases_are_deterministic_copies():
    ds = make_dataset(f"medscribble:{MEDSCRIBBLE}?tasks=ACDC", start="human")
    a, b, c = ds.case(4, 0), ds.case(4, 0), ds.case(4, 7)
    for x in (b, c):
        assert (x.image_id, x.target_id, x.task) == (a.image_id, a.target_id, a.task)
        np.testing.assert_array_equal(x.image, a.image)
        np.testing.assert_array_equal(x.target, a.target)
        np.testing.assert_array_equal(x.human_scribbles[0], a.human_scribbles[0])
    a.target[:] = False  # a session editing its arrays must not reach the cached example
    assert ds.case(4, 0).target.any()
    with pytest.raises(ValueError, match="index"):
        ds.case(len(ds), 0)


def test_nifti_and_folder_datasets(volumes, tmp_path):
    manifest = _manifest(volumes, "ct.nii.gz,seg.nii.gz,71;72,2,all:1")
    ds = make_dataset(f"nifti:{manifest}", start="clicks")
    assert len(ds) == 6 and not ds.has_human_scribbles
    case = ds.case(0, 0)
    assert (case.image_id, case.target_id, case.task) == ("nifti/ct:axis2:slice2", "label-71+72", "ct")
    with pytest.raises(ValueError, match="start: .*no human scribbles"):
        make_dataset(f"nifti:{manifest}", start="human")
    folder = make_dataset(f"folder:{_folder(tmp_path / 'mine')}", start="clicks")
    assert len(folder) == 2 and not folder.has_human_scribbles
    assert folder.case(1, 0).image_id == "folder/mine/b"
    assert make_dataset("disks", 2).case(0, 0).task == "disks"


@pytest.mark.parametrize(
    "name, word",
    [
        ("imagenet", "dataset: unknown dataset 'imagenet'"),
        ("medscribble:", "dataset: 'medscribble:' names no path"),
        ("medscribble:/x?foo=1", "dataset: unknown option 'foo=1'"),
        ("folder:/no/such/folder", r"dataset: /no/such/folder: image folder not found"),
        ("nifti:missing.csv", r"dataset: .*missing\.csv: manifest not found"),
    ],
)
def test_bad_dataset_names(name, word):
    with pytest.raises(ValueError, match=word):
        make_dataset(name, start="clicks")


def test_cli_missing_manifest_is_one_line_exit_2(tmp_path, capsys):
    code = simulate_main(["--dataset", "nifti:missing.csv", "--method", "random-walker", "--workers", "0",
                          "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("probseg-simulate: error: dataset:") and "missing.csv" in err[0]
    assert not (tmp_path / "o").exists()


@needs_medscribble
def test_random_walker_human_start_end_to_end(tmp_path):
    settings = RunSettings(dataset=f"medscribble:{MEDSCRIBBLE}?tasks=WBC", method="random-walker",
                           policy="best-of-k", n_sessions=3,
                           session=SessionConfig(k=1, start="human", max_iters=2))
    steps, sessions, summary = run(settings, out=tmp_path / "r", workers=0, progress=False)
    assert len(sessions) == 3 and len(steps) == 6 and summary["n_sessions"] == 3
    assert all(i.startswith("medscribble/WBC/CV/") for i in sessions["image"])
    assert (sessions["start"] == "human").all()
    assert sessions["final_dice"].between(0.5, 1.0).all()  # the walker from real scribbles finds the cells
    # Every session starts from the annotator's strokes: at least one positive and one negative.
    assert (steps.loc[steps["iteration"] == 1, "clicks_so_far"] >= 2).all()


def test_example_checks_its_arrays():
    img = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="target"):
        Example("t", "x", img, np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="image"):
        Example("t", "x", img.astype(np.float64), np.zeros((4, 4), bool))
