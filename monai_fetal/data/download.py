"""Download of the public HC18 training set (Zenodo record 1327317) with MD5 checks, by MONAI's download helpers."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

from monai.apps.utils import HashCheckError, check_hash, download_url, extractall

from monai_fetal.data.cohort import find_cases
from monai_fetal.errors import InputDataError
from monai_fetal.staging import output_lock, staging_folder

__all__ = ["download_hc18", "HC18_URL", "HC18_CSV_URL", "HC18_MD5", "HC18_CSV_MD5", "HC18_FOLDER", "HC18_CSV_NAME"]

logger = logging.getLogger(__name__)

HC18_URL = "https://zenodo.org/records/1327317/files/training_set.zip?download=1"
HC18_CSV_URL = "https://zenodo.org/records/1327317/files/training_set_pixel_size_and_HC.csv?download=1"
HC18_MD5 = "00eb8198b9a505b2b3a6dfc740382497"
HC18_CSV_MD5 = "c0761518fece2bd2d2ad4218f2cd9777"
HC18_FOLDER = "training_set"
HC18_CSV_NAME = "training_set_pixel_size_and_HC.csv"
_ARCHIVE_NAME = "training_set.zip"


def _fetch(url: str, path: Path, md5: str | None, progress: bool) -> None:
    """Download ``url`` to ``path`` (kept if already there) and check its MD5; errors become ``InputDataError``."""
    existed = path.exists()
    try:
        download_url(url, path, hash_val=md5 or None, hash_type="md5", progress=progress)
    except HashCheckError as err:
        if existed:
            raise InputDataError(
                path, f"is already there but its md5 is not {md5}", f"delete it and run again to download it from {url}"
            ) from err
        raise InputDataError(
            path,
            f"the file downloaded from {url} does not have md5 {md5} (corrupt or changed download; nothing was kept)",
            "run again; if it fails again, check the URL and the md5 against the published record (Zenodo 1327317)",
        ) from err
    except (OSError, RuntimeError) as err:
        raise InputDataError(
            path,
            f"cannot be downloaded from {url} ({err})",
            "check the network and the URL, or put the file there by hand",
        ) from err
    if not path.is_file():
        raise InputDataError(path, f"was not written by the download from {url}", "check that its folder is writable")


def _is_complete(folder: Path, csv_md5: str | None) -> bool:
    csv_path = folder / HC18_CSV_NAME
    return folder.is_dir() and csv_path.is_file() and check_hash(csv_path, csv_md5 or None, "md5")


def download_hc18(
    root: str | Path,
    url: str = HC18_URL,
    csv_url: str = HC18_CSV_URL,
    md5: str | None = HC18_MD5,
    csv_md5: str | None = HC18_CSV_MD5,
    progress: bool = True,
    keep_archive: bool = False,
) -> Path:
    """Download and extract the HC18 training set into ``root/training_set`` and return that folder.

    The folder holds ``NNN_HC.png`` beside ``NNN_HC_Annotation.png`` and the pixel-size / HC CSV, the
    HC18 layout that :func:`monai_fetal.data.cohort.find_cases` and ``prepare_cohort`` read. It is
    built in a staging folder of its own and renamed when complete, under a lock on the folder (a second run
    waits), so a failed run leaves no partial folder;
    a complete folder is reused without downloading again.

    Args:
        root: folder to download into (created if missing).
        url: URL of ``training_set.zip`` (``file://`` URLs work, e.g. for a local mirror).
        csv_url: URL of ``training_set_pixel_size_and_HC.csv``.
        md5: expected MD5 of the archive (``None`` skips the check).
        csv_md5: expected MD5 of the CSV (``None`` skips the check).
        progress: show download progress bars.
        keep_archive: keep ``root/training_set.zip`` after extraction.

    Raises:
        InputDataError: a download fails or has the wrong MD5, the archive is not a zip holding a
            ``training_set/`` folder of HC18 pairs, or ``root/training_set`` exists and is not a
            complete download.
    """
    root = Path(root)
    target = root / HC18_FOLDER
    with output_lock(target):
        if _is_complete(target, csv_md5):
            logger.info("%s is complete; nothing downloaded", target)
            return target
        if target.exists():
            raise InputDataError(
                target,
                f"exists but is not a complete HC18 download (no {HC18_CSV_NAME} with md5 {csv_md5})",
                "remove it and run again, or choose another folder",
            )
        archive = root / _ARCHIVE_NAME
        _fetch(url, archive, md5, progress)
        with staging_folder(target) as staging:
            try:
                extractall(archive, staging, file_type="zip", has_base=False)
            except zipfile.BadZipFile as err:
                raise InputDataError(archive, f"is not a readable zip archive ({err})", "delete it and run again") from err
            extracted = staging / HC18_FOLDER
            if not extracted.is_dir():
                raise InputDataError(
                    archive, f"holds no '{HC18_FOLDER}/' folder", f"give the HC18 {_ARCHIVE_NAME} (Zenodo 1327317)"
                )
            _fetch(csv_url, extracted / HC18_CSV_NAME, csv_md5, progress)
            find_cases(extracted)
            extracted.rename(target)
        if not keep_archive:
            archive.unlink()
    return target
