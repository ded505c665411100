"""The reader layer: labels and scores read as their authors publish them.

Real files (../shared/data/real, see its SOURCES.md sections B and D) are read in place
and checked against the tables they were compared with there; small synthetic files
cover each option and each way a file or an option can be wrong.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import scipy.io
from conftest import SHARED_REAL

from materializer import tableio
from materializer.errors import DataError, UsageError
from materializer.readers import FORMATS, READ_KEYS, format_of, read_source, resolve_read

needs_real = pytest.mark.skipif(not SHARED_REAL.is_dir(),
                                reason="../shared/data/real is not present")
LABELS_TXT = {"sep": ", ", "header": False, "names": ["path", "duration_s", "fps", "mos"]}


def real(relative: str, read: dict | None = None, **kwargs) -> pa.Table:
    return read_source(SHARED_REAL / relative, relative, read, **kwargs)


def column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy()


# --- real files: MATLAB ---------------------------------------------------------------


@needs_real
def test_live_vqc_v5_cell_and_double_match_the_metadata() -> None:
    table = real("native/live-vqc/LiveVQC_data.mat", {"variables": ["video_list", "mos"]})
    assert table.num_rows == 585 and table.column_names == ["video_list", "mos"]
    assert table.schema.field("video_list").type == pa.string()
    meta = real("live-vqc/LIVE_VQC_metadata.csv")
    stripped = pc.replace_substring(meta.column("File"), "NEW.mp4", ".mp4")
    assert table.column("video_list").to_pylist() == stripped.to_pylist()
    assert np.array_equal(column(table, "mos"), column(meta, "MOS"))


@needs_real
def test_live_vqc_reads_every_variable_by_default() -> None:
    assert real("native/live-vqc/LiveVQC_data.mat").column_names == ["video_list", "mos"]


@needs_real
def test_konvid_v73_hdf5_scores_match_the_metadata_mos() -> None:
    table = real("native/konvid-1k/KoNViD-1kinfo.mat",
                 {"variables": ["video_names", "scores"]})
    assert table.num_rows == 1200
    assert table.column("video_names")[0].as_py().endswith("_centercrop_960x540_8s.mp4")
    meta = real("konvid-1k/KONVID_1K_metadata.csv", text_columns=["flickr_id"])
    mos = dict(zip(meta.column("flickr_id").to_pylist(), column(meta, "mos"), strict=True))
    ids = [re.match(r"^([0-9]+)_", name).group(1)
           for name in table.column("video_names").to_pylist()]
    assert sorted(ids) == sorted(mos)
    assert np.abs(column(table, "scores") - np.array([mos[i] for i in ids])).max() < 5e-5


@needs_real
def test_v73_and_v5_copies_of_konvid_read_the_same() -> None:
    variables = {"variables": ["video_names", "scores"]}
    hdf5 = real("native/konvid-1k/KoNViD-1kinfo.mat", variables)
    v5 = real("native/konvid-1k/KoNViD-1k_data.mat", variables)
    assert hdf5.equals(v5)


@needs_real
def test_v73_matrix_is_transposed_back_to_matlab_shape() -> None:
    # MATLAB's index is 1000×1200 (one permutation per row), stored 1200×1000 in HDF5.
    table = real("native/konvid-1k/KoNViD-1kinfo.mat", {"variables": ["index"]})
    assert (table.num_rows, table.num_columns) == (1000, 1200)
    assert table.column_names[:2] == ["index_1", "index_2"]
    first = np.array([table.column(k)[0].as_py() for k in range(1200)])
    assert sorted(first) == list(range(1, 1201))  # a 1-based permutation


@needs_real
def test_live_qualcomm_struct_fields_match_dover_labels() -> None:
    table = real("native/live-qualcomm/LIVE-Qualcomm_qualcommSubjectiveData.mat",
                 {"variables": ["qualcommVideoData.vidNames",
                                "qualcommSubjectiveData.unBiasedMOS"],
                  "names": ["video", "mos"]})
    assert table.num_rows == 208 and table.column_names == ["video", "mos"]
    labels = real("live-qualcomm/labels.txt", LABELS_TXT)
    by_name = dict(zip([Path(p).name for p in labels.column("path").to_pylist()],
                       column(labels, "mos"), strict=True))
    assert np.array_equal(column(table, "mos"),
                          [by_name[v] for v in table.column("video").to_pylist()])
    hdf5 = real("native/live-qualcomm/LIVE-Qualcomminfo.mat",
                {"variables": ["video_names", "scores"]})
    assert np.array_equal(column(hdf5, "scores"), column(table, "mos"))


@needs_real
def test_missing_struct_field_lists_the_fields() -> None:
    with pytest.raises(DataError, match="has no field 'MOS'; fields: unBiasedMOS, biasedMOS"):
        real("native/live-qualcomm/LIVE-Qualcomm_qualcommSubjectiveData.mat",
             {"variables": ["qualcommSubjectiveData.MOS"]})


@needs_real
@pytest.mark.parametrize("relative", ["native/konvid-1k/KoNViD-1kinfo.mat",
                                      "native/konvid-1k/KoNViD-1k_data.mat"])
def test_missing_variable_lists_the_variables(relative: str) -> None:
    with pytest.raises(DataError, match="has no variable 'mos'; variables: .*scores"):
        real(relative, {"variables": ["video_names", "mos"]})


@needs_real
def test_variables_of_different_lengths_are_refused() -> None:
    with pytest.raises(DataError, match=r"different lengths \(video_names 1200, index 1000\)"):
        real("native/konvid-1k/KoNViD-1kinfo.mat", {"variables": ["video_names", "index"]})


@needs_real
def test_row_vector_scores_are_one_column() -> None:
    table = real("native/youtube-ugc/youtube_ugc_data.mat",
                 {"variables": ["video_names", "scores"]})  # scores is 1×1142
    assert (table.num_rows, table.num_columns) == (1142, 2)


@needs_real
def test_double_stored_as_uint8_reads_as_double() -> None:
    table = real("native/cvd2014/CVD2014_data.mat")
    assert table.schema.field("video_score").type == pa.float64()
    realigned = real("native/cvd2014/CVD2014_Realignment_MOS.csv",
                     {"sep": ";", "decimal": ","})
    assert np.array_equal(column(table, "video_score"),
                          np.floor(column(realigned, "Original MOS")))


@needs_real
@pytest.mark.skipif(not (SHARED_REAL / "konvid-1k/KONVID_1K_VIDEVAL_feats.mat").is_file(),
                    reason="the VIDEVAL feature matrix is not in ../shared/data/real")
def test_videval_feature_matrix_equals_its_derived_csv() -> None:
    table = real("konvid-1k/KONVID_1K_VIDEVAL_feats.mat")
    assert (table.num_rows, table.num_columns) == (1200, 60)
    derived = real("konvid-1k/KONVID_1K_VIDEVAL_feats.derived.csv")
    ours = np.column_stack([column(table, f"feats_mat_{k}") for k in range(1, 61)])
    theirs = np.column_stack([column(derived, f"videval_f{k:02d}") for k in range(1, 61)])
    assert np.isnan(ours).sum() == 2
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, equal_nan=True)


# --- real files: text, sheets, JSON ---------------------------------------------------


@needs_real
def test_youtube_ugc_xlsx_mos_sheet_matches_the_metadata() -> None:
    table = real("native/youtube-ugc/original_videos_MOS_for_YouTube_UGC_dataset.xlsx",
                 {"sheet": "MOS"})
    assert table.num_rows == 1380 and table.column_names[:5] == [
        "vid", "category", "resolution", "# subjects", "MOS full"]
    meta = real("youtube-ugc/YOUTUBE_UGC_metadata.csv")
    assert table.column("vid").to_pylist() == meta.column("vid").to_pylist()
    assert np.array_equal(column(table, "MOS full"), column(meta, "MOSFull"))
    assert table.column("MOS chunk05").null_count == 3  # empty cells are null
    assert table.column("MOS chunk10").null_count == 9


@needs_real
def test_xlsx_sheet_by_position_and_without_header() -> None:
    book = "native/youtube-ugc/original_videos_MOS_for_YouTube_UGC_dataset.xlsx"
    diff = real(book, {"sheet": 2, "header": False, "names": ["vid"]})
    diff2 = real(book, {"sheet": "diff2"})
    assert (diff.num_rows, diff2.num_rows) == (348, 1032)
    assert diff2.schema.field("MOS chunk05").type == pa.float64()  # "" cells are empty
    assert not set(diff.column("vid").to_pylist()) & set(diff2.column("vid").to_pylist())


@needs_real
def test_missing_sheet_lists_the_sheets() -> None:
    with pytest.raises(DataError, match="has no sheet 'Scores'; sheets: MOS, readme, diff, "
                                        "diff2"):
        real("native/youtube-ugc/original_videos_MOS_for_YouTube_UGC_dataset.xlsx",
             {"sheet": "Scores"})


@needs_real
def test_prediction_workbook_with_chinese_headers() -> None:
    table = real("native/konvid-1k/KoNViD-1k_prediction_results.xlsx")
    assert table.num_rows == 1200
    assert table.column_names[0] == "真实MOS分数(y_label)"


@needs_real
def test_cvd2014_semicolons_and_decimal_commas() -> None:
    table = real("native/cvd2014/CVD2014_Realignment_MOS.csv", {"sep": ";", "decimal": ","})
    # 4 empty unnamed columns and 168 trailing ";;;;;;;" rows are gone.
    assert table.column_names == ["Content", "File_name", "Original MOS", "Realignment MOS"]
    assert table.num_rows == 234
    assert pc.min(table.column("Realignment MOS")).as_py() == -6.5
    labels = real("cvd2014/labels.txt", LABELS_TXT)
    by_stem = dict(zip([Path(p).stem for p in labels.column("path").to_pylist()],
                       column(labels, "mos"), strict=True))
    assert np.array_equal(column(table, "Realignment MOS"),
                          [by_stem[name] for name in table.column("File_name").to_pylist()])


@needs_real
@pytest.mark.parametrize(("relative", "rows", "predictions"), [
    ("konvid-1k/labels.txt", 1200, "val-kv1k"),
    ("live-vqc/labels.txt", 585, "val-livevqc"),
    ("youtube-ugc/labels.txt", 1147, "val-ytugc"),
    ("lsvq/labels_test.txt", 7186, "val-ltest"),
    ("lsvq/labels_1080p.txt", 3573, "val-l1080p"),
    ("cvd2014/labels.txt", 234, "val-cvd2014"),
])
def test_dover_labels_txt(relative: str, rows: int, predictions: str) -> None:
    table = real(relative, LABELS_TXT, text_columns=["path"])
    assert table.num_rows == rows and table.column_names == LABELS_TXT["names"]
    assert pa.types.is_floating(table.schema.field("mos").type)
    derived = real(f"dover-predictions/{predictions}.derived.csv")
    assert table.column("path").equals(derived.column("path"))  # row-aligned, verbatim


@needs_real
@pytest.mark.parametrize("name", ["val-kv1k", "val-livevqc", "val-ytugc", "val-cvd2014",
                                  "val-ltest", "val-l1080p"])
def test_dover_pickles_through_the_restricted_unpickler(name: str) -> None:
    table = real(f"dover-predictions/{name}.pkl")
    assert table.column_names == ["resize", "fragments"]
    assert table.schema.field("fragments").type == pa.float32()
    derived = real(f"dover-predictions/{name}.derived.csv")
    assert table.num_rows == derived.num_rows
    for ours, theirs in (("resize", "dover_aesthetic_raw"),
                         ("fragments", "dover_technical_raw")):
        # The derived CSV prints 7 significant digits of each float32.
        np.testing.assert_allclose(column(table, ours), column(derived, theirs), rtol=1e-6,
                                   atol=1e-9)


@needs_real
def test_vsfa_object_npy_tuple_by_position() -> None:
    table = real("vsfa-predictions/VSFA-KoNViD_1k-EXP0.npy",
                 {"variables": [0, 1, 7], "names": ["vsfa_pred", "mos_test", "test_index"]})
    derived = real("vsfa-predictions/VSFA-KoNViD_1k-EXP0.derived.csv")
    assert table.num_rows == 240
    assert np.array_equal(column(table, "test_index"), column(derived, "test_index"))
    for name in ("vsfa_pred", "mos_test"):
        np.testing.assert_allclose(column(table, name), column(derived, name), rtol=1e-9)


@needs_real
def test_live_hfr_transposed_csv() -> None:
    table = real("native/live-hfr/subject_MOS.csv", {"transpose": True})
    assert table.column_names == ["File Names", "MOS", "std"] and table.num_rows == 480
    assert table.column("File Names")[0].as_py() == "1Runner_crf_0_24fps"


@needs_real
def test_pyiqa_tab_separated_txt_and_headerless_ffhq_csv() -> None:
    niqe = real("native/pyiqa-calibra/niqe_imported_result.txt",
                {"header": False, "names": ["image", "niqe"]})  # .txt: whitespace
    assert niqe.column("image").to_pylist()[:2] == ["I03.bmp", "I04.bmp"]
    ffhq = real("native/ffhq/FFHQ_score_topiq_nr-face.csv",
                {"header": False, "names": ["image", "score"]}, text_columns=["image"])
    assert ffhq.num_rows == 70000 and ffhq.column("image")[-1].as_py() == "69999.png"


@needs_real
def test_json_list_of_rows() -> None:
    table = real("native/konvid-1k/konvid1k.json", text_columns=["video_path"])
    assert table.num_rows == 1200 and table.column_names == ["video_path", "mos", "level"]


# --- synthetic: delimited text --------------------------------------------------------


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding, newline="")
    return path


def read(path: Path, read: dict | None = None, **kwargs) -> pa.Table:
    return read_source(path, path.name, read, **kwargs)


def test_separator_defaults_by_extension(tmp_path: Path) -> None:
    rows = {"a.tsv": "k\tv\nx y\t1\n", "a.txt": "k  v\nx\t1\n", "a.dat": "k v\nx 1\n"}
    for name, text in rows.items():
        table = read(write(tmp_path / name, text), {"header": True})
        assert table.column_names == ["k", "v"] and table.column("v").to_pylist() == [1]
    assert read(tmp_path / "a.tsv").column("k").to_pylist() == ["x y"]


def test_multi_character_separator_is_literal(tmp_path: Path) -> None:
    path = write(tmp_path / "l.txt", "dir/a.b+c.mp4, -1, 2.5\ndir/d.mp4, 3, 4\n")
    table = read(path, {"sep": ", ", "header": False, "names": ["p", "n", "x"]})
    assert table.to_pylist()[0] == {"p": "dir/a.b+c.mp4", "n": -1, "x": 2.5}


def test_key_columns_stay_as_written(tmp_path: Path) -> None:
    path = write(tmp_path / "k.csv", "id;mos\n0042;3,5\n7;4\n")
    table = read(path, {"sep": ";", "decimal": ","}, text_columns=["id"])
    assert table.column("id").to_pylist() == ["0042", "7"]
    assert table.column("mos").to_pylist() == [3.5, 4.0]
    chosen = read(path, {"sep": ";"}, text_columns=lambda names: names[:1])
    assert chosen.column("id").type == pa.string()


def test_decimal_comma_leaves_dotted_cells_as_text(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "a;b\n1,5;1.5\n2;2\n")
    table = read(path, {"sep": ";", "decimal": ","})
    assert table.column("a").to_pylist() == [1.5, 2.0]
    assert table.column("b").to_pylist() == ["1.5", "2"]


def test_only_an_empty_cell_is_null(tmp_path: Path) -> None:
    path = write(tmp_path / "n.csv", "k,v\nNA,\nNone,nan\n")
    table = read(path, {"sep": ","})
    assert table.column("k").to_pylist() == ["NA", "None"]
    assert table.column("v").type == pa.float64() and table.column("v").null_count == 1


def test_empty_trailing_rows_and_unnamed_columns_go(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "k;;v;named;\n1;;2;;\n;;;;\n3;;4;;\n;;;;\r\n;;;;\n")
    table = read(path, {"sep": ";"})
    assert table.column_names == ["k", "v", "named"]  # an empty named column stays
    assert table.column("k").to_pylist() == [1, None, 3]  # an empty middle row stays


def test_unnamed_column_with_values_is_kept_as_pandas_names_it(tmp_path: Path) -> None:
    table = read(write(tmp_path / "u.csv", ",v\n0,a\n"), {"sep": ","})
    assert table.column_names == ["Unnamed: 0", "v"]


def test_names_rename_and_must_fit(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "a,b\n1,2\n")
    assert read(path, {"names": ["x", "y"]}).column_names == ["x", "y"]
    assert read(path, {"header": False, "names": ["x", "y"]}).num_rows == 2
    with pytest.raises(DataError, match="read.names has 3 names but the file has 2"):
        read(path, {"names": ["x", "y", "z"]})


def test_duplicate_header_names_are_refused_unless_renamed(tmp_path: Path) -> None:
    path = write(tmp_path / "d.txt", "a a\n1 2\n")
    with pytest.raises(DataError, match="duplicate column names: a"):
        read(path)
    assert read(path, {"names": ["a", "b"]}).column_names == ["a", "b"]


def test_transpose_then_header(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "name,x1,x2\nmos,1.5,2\n")
    assert read(path, {"transpose": True}).to_pylist() == [
        {"name": "x1", "mos": 1.5}, {"name": "x2", "mos": 2.0}]
    headless = read(path, {"transpose": True, "header": False, "names": ["k", "v"]})
    assert headless.num_rows == 3


def test_skip_rows_comment_and_encoding(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", "made by a script\nnom;mos # score\ncafé;3\n# note\n",
                 encoding="latin-1")
    table = read(path, {"sep": ";", "skip_rows": 1, "comment": "#", "encoding": "latin-1"})
    assert table.to_pylist() == [{"nom": "café", "mos ": 3}]
    with pytest.raises(DataError, match="not valid utf-8 text"):
        read(path, {"sep": ";"})


def test_utf8_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", "\ufeffvid;MOS\nA;1\n")
    assert read(path, {"sep": ";"}).column_names == ["vid", "MOS"]
    assert read(path, {"sep": ";", "encoding": "UTF8"}).column_names == ["vid", "MOS"]


def test_ragged_and_empty_text_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Expected 2 fields in line 2, saw 3"):
        read(write(tmp_path / "r.txt", "a b\n1 2 3\n"))
    with pytest.raises(DataError, match="file is empty"):
        read(write(tmp_path / "e.txt", "\n\n"))
    with pytest.raises(DataError, match="file is empty"):
        read(write(tmp_path / "s.csv", ";;\n;;\n"), {"sep": ";"})


def test_plain_csv_is_read_by_tableio(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", "k,v\n007,1\n")
    assert read(path, text_columns=["k"]).equals(tableio.read_table(path, "p.csv",
                                                                    text_columns=["k"]))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_before_reading(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "f.txt")
    for fmt in ("text", "mat", "xlsx", "pickle", "npy"):
        with pytest.raises(DataError, match="not a regular file"):
            read(tmp_path / "f.txt", {"format": fmt})


# --- synthetic: JSON ------------------------------------------------------------------


def test_json_objects_back_to_back(tmp_path: Path) -> None:
    path = write(tmp_path / "q.json", '{"id": 1, "s": 0.5}{"id": 2, "s": 0.7}\n {"id": 3, '
                                      '"s": null}')
    table = read(path, text_columns=["id"])
    assert table.column("id").to_pylist() == ["1", "2", "3"]
    assert table.column("s").to_pylist() == [0.5, 0.7, None]
    assert read(write(tmp_path / "r.json", '{"rows": [{"a": 1}]}')).num_rows == 1
    with pytest.raises(DataError, match="not valid JSON: Expecting value at line 1"):
        read(write(tmp_path / "bad.json", '{"a": 1}{"a": }'))
    with pytest.raises(DataError, match="must each be an object"):
        read(write(tmp_path / "mixed.json", '{"a": 1} [1]'))


# --- synthetic: xlsx ------------------------------------------------------------------


def workbook(path: Path, sheets: dict[str, list[list]]) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def test_xlsx_types_nulls_and_mixed_columns(tmp_path: Path) -> None:
    path = workbook(tmp_path / "b.xlsx", {"notes": [["x"]], "data": [
        ["title row"], ["id", "mos", "mixed", None], [1, 3.5, "a", None], [2, None, 2, None],
        [None, None, None, None]]})
    table = read(path, {"sheet": "data", "skip_rows": 1}, text_columns=["id"])
    assert table.column_names == ["id", "mos", "mixed"]
    assert table.column("id").to_pylist() == ["1", "2"]
    assert table.column("mos").to_pylist() == [3.5, None]
    assert table.column("mixed").to_pylist() == ["a", "2"]
    assert read(path, {"header": False, "names": ["x"]}).column("x").to_pylist() == ["x"]


def test_xlsx_sheet_position_out_of_range_lists_sheets(tmp_path: Path) -> None:
    path = workbook(tmp_path / "b.xlsx", {"only": [["a"], [1]]})
    with pytest.raises(DataError, match="has no sheet 3; sheets: only"):
        read(path, {"sheet": 3})


@pytest.mark.parametrize("suffix", [".xlsx", ".mat", ".npy", ".pkl", ".npz"])
def test_truncated_binary_files_are_data_errors(tmp_path: Path, suffix: str) -> None:
    whole = tmp_path / f"whole{suffix}"
    if suffix == ".xlsx":
        workbook(whole, {"s": [["a"], [1]]})
    elif suffix == ".mat":
        scipy.io.savemat(whole, {"x": np.arange(100.0)})
    elif suffix == ".npy":
        np.save(whole, np.arange(100.0))
    elif suffix == ".npz":
        np.savez(whole, x=np.arange(100.0))
    else:
        whole.write_bytes(pickle.dumps({"x": np.arange(100.0)}))
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DataError) as caught:
        read(cut)
    assert caught.value.file == cut.name and "\n" not in str(caught.value)
    garbage = tmp_path / f"garbage{suffix}"
    garbage.write_bytes(b"\x00not this format at all" * 4)
    with pytest.raises(DataError):
        read(garbage)


# --- synthetic: MATLAB ----------------------------------------------------------------


def test_mat_v5_shapes_cells_chars_and_structs(tmp_path: Path) -> None:
    cells = np.empty((3, 1), dtype=object)
    cells[:, 0] = ["a.mp4", "", "c.mp4"]
    path = tmp_path / "m.mat"
    scipy.io.savemat(path, {"names": cells, "row": np.array([[1.0, 2.0, 3.0]]),
                            "feats": np.arange(6.0).reshape(3, 2),
                            "s": {"inner": {"mos": np.array([[4.0], [5.0], [6.0]])}}})
    table = read(path, {"variables": ["names", "row", "feats", "s.inner.mos"]})
    assert table.column_names == ["names", "row", "feats_1", "feats_2", "mos"]
    assert table.column("names").to_pylist() == ["a.mp4", "", "c.mp4"]
    assert table.column("feats_2").to_pylist() == [1.0, 3.0, 5.0]
    with pytest.raises(DataError, match="'s' is a struct .*name a field"):
        read(path, {"variables": ["s"]})
    with pytest.raises(DataError, match="struct 's.inner' has no field 'x'; fields: mos"):
        read(path, {"variables": ["s.inner.x"]})


def test_mat_char_matrix_rows_lose_their_padding(tmp_path: Path) -> None:
    path = tmp_path / "c.mat"
    scipy.io.savemat(path, {"chars": np.array(["ab ", "cde"]), "n": np.array([1, 2])})
    assert read(path).column("chars").to_pylist() == ["ab", "cde"]


def v73(path: Path) -> h5py.File:
    """An HDF5 file laid out as MATLAB -v7.3 writes one (arrays stored transposed)."""
    mat = h5py.File(path, "w", userblock_size=512)
    refs = mat.create_group("#refs#")
    names = ["a.mp4", "é.mp4", ""]
    targets = []
    for index, name in enumerate(names):
        if name:
            data = np.array([[ord(ch)] for ch in name], dtype=np.uint16)  # L×1
            cell = refs.create_dataset(f"r{index}", data=data)
        else:
            cell = refs.create_dataset(f"r{index}", data=np.array([0, 0], dtype=np.uint64))
            cell.attrs["MATLAB_empty"] = np.uint8(1)
        cell.attrs["MATLAB_class"] = np.bytes_("char")
        targets.append(cell.ref)
    cells = mat.create_dataset("names", data=np.array([targets], dtype=h5py.ref_dtype))
    cells.attrs["MATLAB_class"] = np.bytes_("cell")
    scores = mat.create_dataset("scores", data=np.array([[1.5, 2.5, 3.5]]))  # MATLAB 3×1
    scores.attrs["MATLAB_class"] = np.bytes_("double")
    flags = mat.create_dataset("flags", data=np.array([[1, 0, 1]], dtype=np.uint8))
    flags.attrs["MATLAB_class"] = np.bytes_("logical")
    chars = mat.create_dataset("chars", data=np.array([[ord(c) for c in "xz"],
                                                       [ord(c) for c in "y "]],
                                                      dtype=np.uint16))  # MATLAB 2×2
    chars.attrs["MATLAB_class"] = np.bytes_("char")
    struct = mat.create_group("info")
    struct.attrs["MATLAB_class"] = np.bytes_("struct")
    mos = struct.create_dataset("mos", data=np.array([[4.0, 5.0, 6.0]]))
    mos.attrs["MATLAB_class"] = np.bytes_("double")
    return mat


def test_mat_v73_cells_logicals_chars_and_structs(tmp_path: Path) -> None:
    path = tmp_path / "h.mat"
    v73(path).close()
    with open(path, "r+b") as handle:  # MATLAB's header text in the user block
        handle.write(b"MATLAB 7.3 MAT-file".ljust(116) + b"\x00" * 8 + b"\x00\x02IM")
    table = read(path, {"variables": ["names", "scores", "flags", "info.mos"]})
    assert table.to_pylist()[1] == {"names": "é.mp4", "scores": 2.5, "flags": False,
                                    "mos": 5.0}
    assert table.column("names")[2].as_py() == ""
    assert read(path, {"variables": ["chars"]}).column("chars").to_pylist() == ["xy", "z"]
    with pytest.raises(DataError, match="struct 'info' has no field 'MOS'; fields: mos"):
        read(path, {"variables": ["info.MOS"]})
    with pytest.raises(DataError, match="has no variable 'x'; variables: chars, flags, info"):
        read(path, {"variables": ["x"]})


# --- synthetic: numpy and pickles -----------------------------------------------------


def test_npy_vector_matrix_and_dict(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.array([0.5, 0.25]))
    np.save(tmp_path / "m.npy", np.arange(6).reshape(3, 2))
    np.save(tmp_path / "d.npy", {"mos": np.array([1.0, 2.0]), "id": np.array(["a", "b"])})
    assert read(tmp_path / "v.npy").column_names == ["value"]
    assert read(tmp_path / "m.npy").column_names == ["value_1", "value_2"]
    named = read(tmp_path / "d.npy", {"variables": ["id", "mos"], "names": ["key", "y"]})
    assert named.to_pylist()[0] == {"key": "a", "y": 1.0}


def test_npz_members_and_object_members(tmp_path: Path) -> None:
    path = tmp_path / "z.npz"
    np.savez(path, score=np.array([1.0, 2.0]), name=np.array(["a", "b"], dtype=object),
             other=np.arange(3))
    table = read(path, {"variables": ["name", "score"]})
    assert table.to_pylist() == [{"name": "a", "score": 1.0}, {"name": "b", "score": 2.0}]
    with pytest.raises(DataError, match="has no variable 'mos'; members: 'score', 'name'"):
        read(path, {"variables": ["mos"]})


def test_pickle_dict_of_arrays_any_protocol(tmp_path: Path) -> None:
    for protocol in (2, 3, 4, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps({"s": np.arange(3, dtype=np.float32),
                                       "n": [np.float64(1), np.float64(2), np.float64(3)],
                                       "t": ("a", "b", "c"),
                                       "o": OrderedDict(a=1)}, protocol=protocol))
        table = read(path, {"variables": ["s", "n", "t"]})
        assert table.column_names == ["s", "n", "t"]
        assert table.column("t").to_pylist() == ["a", "b", "c"]


class _Touch:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _Open:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


@pytest.mark.parametrize(("payload", "global_name"), [
    (_Touch, f"{os.name}.system"), (_Open, "io.open")])
def test_pickle_needing_a_forbidden_global_runs_nothing(tmp_path: Path, payload: type,
                                                        global_name: str) -> None:
    target = tmp_path / "CREATED"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"x": np.arange(2), "y": payload(target)}))
    with pytest.raises(DataError, match=f"needs the global {re.escape(global_name)}, "):
        read(path)
    np.save(tmp_path / "evil.npy", np.array([payload(target), 1], dtype=object))
    with pytest.raises(DataError, match="which is not allowed"):
        read(tmp_path / "evil.npy")
    assert not target.exists()


def test_pickle_of_a_list_of_scalars_is_one_column(tmp_path: Path) -> None:
    path = tmp_path / "l.pickle"
    path.write_bytes(pickle.dumps([0.5, 0.75]))
    assert read(path).column("value").to_pylist() == [0.5, 0.75]


def test_pickle_positions_and_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "t.pkl"
    path.write_bytes(pickle.dumps((np.array([1.0, 2.0]), 0.9, np.array([5, 6]))))
    assert read(path, {"variables": [2, 0]}).column_names == ["2", "0"]
    with pytest.raises(DataError, match="has no variable '2'; keys: 0, 1, 2"):
        read(path, {"variables": ["2"]})
    with pytest.raises(DataError, match=r"different lengths \(0 2, 1 1, 2 2\)"):
        read(path)


# --- options ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fmt"), [
    ("a.parquet", "parquet"), ("a.pq", "parquet"), ("a.csv", "csv"), ("a.CSV", "csv"),
    ("a.jsonl", "jsonl"), ("a.ndjson", "jsonl"), ("a.json", "json"), ("a.txt", "text"),
    ("a.tsv", "text"), ("a.dat", "text"), ("a.xlsx", "xlsx"), ("a.xlsm", "xlsx"),
    ("a.mat", "mat"), ("a.npy", "npy"), ("a.npz", "npz"), ("a.pkl", "pickle"),
    ("a.pickle", "pickle")])
def test_format_by_extension(name: str, fmt: str) -> None:
    assert format_of(name) == fmt


def test_format_option_wins_and_unknowns_are_usage_errors() -> None:
    assert format_of("labels.log", {"format": "text"}) == "text"
    for written, read_ in (("a.xyz", None), ("a.csv", {"format": "excel"}), ("a.xls", None)):
        with pytest.raises(UsageError) as caught:
            format_of(written, read_)
        assert caught.value.exit_code == 2 and caught.value.file == written


@pytest.mark.parametrize(("read_", "message"), [
    ({"delimiter": ","}, "unknown read key 'delimiter'"),
    ({"sheet": "MOS"}, "read.sheet does not apply to format text"),
    ({"variables": ["x"]}, "read.variables does not apply to format text"),
    ({"header": False}, "read.header is false, so read.names must name the columns"),
    ({"header": "no"}, "read.header: 'no' is not of type 'boolean'"),
    ({"skip_rows": -1}, "read.skip_rows: -1 is less than the minimum of 0"),
    ({"decimal": ";"}, "read.decimal: ';' is not one of"),
    ({"names": ["a", "a"]}, "read.names: .* has non-unique elements"),
    ({"comment": "//"}, "read.comment: '//' is too long"),
    ({"sep": ",", "decimal": ","}, "read.decimal and read.sep are both ','"),
    ({"encoding": "klingon"}, "read.encoding 'klingon' is not a known text encoding"),
])
def test_wrong_options_are_usage_errors(tmp_path: Path, read_: dict, message: str) -> None:
    path = write(tmp_path / "a.txt", "a b\n1 2\n")
    with pytest.raises(UsageError, match=message) as caught:
        read(path, read_)
    assert caught.value.file == "a.txt" and "\n" not in str(caught.value)


def test_container_options_are_checked_before_reading() -> None:
    with pytest.raises(UsageError, match="read.variables of a mat file are names"):
        resolve_read("a.mat", {"variables": [0]})
    with pytest.raises(UsageError, match="read.names has 1 names for 2 read.variables"):
        resolve_read("a.npz", {"variables": ["a", "b"], "names": ["x"]})


def test_resolved_options_record_the_defaults() -> None:
    assert resolve_read("l.txt", {"header": False, "names": ["p"]}) == {
        "format": "text", "sep": "whitespace", "header": False, "names": ["p"],
        "decimal": ".", "encoding": "utf-8-sig", "skip_rows": 0, "comment": None,
        "transpose": False}
    assert resolve_read("a.tsv", None)["sep"] == "\t"
    assert resolve_read("a.xlsx", None) == {"format": "xlsx", "header": True, "names": None,
                                            "skip_rows": 0, "sheet": 0}
    assert resolve_read("a.mat", None) == {"format": "mat", "names": None, "variables": None}


def test_read_keys_declare_valid_schemas_for_known_formats() -> None:
    from jsonschema import Draft202012Validator

    for key, spec in READ_KEYS.items():
        assert spec.formats <= set(FORMATS), key
        Draft202012Validator.check_schema(dict(spec.schema))
        assert spec.doc


def test_checking_options_imports_neither_pandas_nor_pyarrow() -> None:
    code = ("import sys, materializer.readers as r; r.resolve_read('a.mat', None); "
            "print('pandas' in sys.modules, 'pyarrow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["False", "False"]
