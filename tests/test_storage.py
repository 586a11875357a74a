"""Files by address (src/storage.py ``place``): a local file or folder and an S3 object or prefix answer alike."""

from __future__ import annotations

import pytest

from src.storage import DataSourceError, LocalPlace, S3Place, is_s3, place, read_source_bytes


def test_an_s3_address_is_told_from_a_local_one_in_one_place():
    assert is_s3("s3://bucket/key") and not is_s3("folder/s3://x") and not is_s3("/tmp/x.csv")
    assert isinstance(place("s3://bucket/prefix"), S3Place)
    assert isinstance(place("/tmp/folder"), LocalPlace) and place("/tmp/folder").local_path is not None
    assert place("s3://bucket/prefix").local_path is None
    assert (
        place("s3://bucket/prefix/").join("predictions", "part-00000.csv") == "s3://bucket/prefix/predictions/part-00000.csv"
    )


def test_a_local_place_lists_opens_holds_and_puts_whole_files(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "b.csv").write_text("x\n2\n")
    (folder / "a.csv").write_text("x\n1\n")
    (folder / "notes.txt").write_text("not a class list")
    assert place(str(folder)).csv_files() == [str(folder / "a.csv"), str(folder / "b.csv")]  # name order, .csv only
    assert place(str(folder / "notes.txt")).csv_files() == [str(folder / "notes.txt")]  # a file named is read
    assert place(str(folder)).total_bytes() == 8
    with place(str(folder / "a.csv")).open() as handle:
        assert handle.read() == b"x\n1\n"

    out = place(str(tmp_path / "out"))
    assert not out.holds("summary.json")
    out.put("predictions/part-00000.csv", b"score\n70\n")
    assert out.holds("predictions") and (tmp_path / "out" / "predictions" / "part-00000.csv").read_bytes() == b"score\n70\n"
    assert not [p for p in (tmp_path / "out" / "predictions").iterdir() if p.name.endswith(".tmp")]


def test_a_local_place_says_what_is_wrong_naming_the_address(tmp_path):
    with pytest.raises(DataSourceError, match="is neither a CSV file, a folder nor an s3:// prefix"):
        place(str(tmp_path / "missing")).csv_files()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSourceError, match=f"no .csv files in {tmp_path / 'empty'}"):
        place(str(tmp_path / "empty")).csv_files()
    assert place(str(tmp_path / "missing")).total_bytes() is None
    with pytest.raises(DataSourceError, match=f"cannot read {tmp_path / 'missing.csv'}"):
        read_source_bytes(str(tmp_path / "missing.csv"))


def test_an_s3_place_lists_opens_holds_and_puts_as_a_local_one(s3_env):
    s3_env.create_bucket(Bucket="cohorts")
    s3_env.put_object(Bucket="cohorts", Key="term1/b.csv", Body=b"x\n2\n")
    s3_env.put_object(Bucket="cohorts", Key="term1/a.csv", Body=b"x\n1\n")
    s3_env.put_object(Bucket="cohorts", Key="term1/notes.txt", Body=b"-")
    cohort = place("s3://cohorts/term1/")
    assert cohort.csv_files() == ["s3://cohorts/term1/a.csv", "s3://cohorts/term1/b.csv"]
    assert cohort.total_bytes() is None  # not listed again for a progress figure
    with place("s3://cohorts/term1/a.csv").open() as handle:
        assert handle.read() == b"x\n1\n"
    assert read_source_bytes("s3://cohorts/term1/b.csv") == b"x\n2\n"

    out = place("s3://cohorts/scored")
    assert not out.holds("summary.json")
    out.put("summary.json", b"{}")
    assert out.holds("summary.json") and not out.holds("rejects")
    assert s3_env.get_object(Bucket="cohorts", Key="scored/summary.json")["Body"].read() == b"{}"

    with pytest.raises(DataSourceError, match="no .csv files in s3://cohorts/nothing"):
        place("s3://cohorts/nothing").csv_files()
    with pytest.raises(DataSourceError, match="cannot read s3://cohorts/term1/missing.csv"):
        place("s3://cohorts/term1/missing.csv").open()
    with pytest.raises(DataSourceError, match="cannot list s3://no-such-bucket/x"):
        place("s3://no-such-bucket/x").csv_files()


HEADERS = {  # file bytes -> the header both kinds of place read off them
    b"\xef\xbb\xbfgender,reading score\r\nfemale,72\r\n": ("gender", "reading score"),  # a BOM, CRLF
    b'"race/ethnicity","math score"\n': ("race/ethnicity", "math score"),
    b'"student\nid",gender\rs1,female\r': ("student\nid", "gender"),  # a quoted line end; lone CRs
    b"gender," + b"x" * 65_000 + b"\n" + b"y" * 10_000: ("gender", "x" * 65_000),  # ends within the first 64 KiB
}
REFUSED = {  # file bytes -> what the refusal says, after the address
    b"": "is not a readable CSV file: it is empty",
    b"gender," + b"x" * 70_000 + b"\n": "the header line is longer than 65536 bytes",
}


def test_both_kinds_of_place_read_the_same_header_and_refuse_the_same_files(tmp_path, s3_env):
    s3_env.create_bucket(Bucket="headers")
    for k, (data, header) in enumerate(HEADERS.items()):
        (tmp_path / f"{k}.csv").write_bytes(data)
        s3_env.put_object(Bucket="headers", Key=f"{k}.csv", Body=data)
        assert place(str(tmp_path / f"{k}.csv")).header() == header
        assert place(f"s3://headers/{k}.csv").header() == header
    for k, (data, said) in enumerate(REFUSED.items()):
        (tmp_path / f"bad{k}.csv").write_bytes(data)
        s3_env.put_object(Bucket="headers", Key=f"bad{k}.csv", Body=data)
        for address in (str(tmp_path / f"bad{k}.csv"), f"s3://headers/bad{k}.csv"):
            with pytest.raises(DataSourceError) as refused:
                place(address).header()
            assert str(refused.value) == f"{address}{' ' if said.startswith('is') else ': '}{said}"
    for address in (str(tmp_path / "missing.csv"), "s3://headers/missing.csv"):
        with pytest.raises(DataSourceError, match=f"cannot read {address}"):
            place(address).header()
