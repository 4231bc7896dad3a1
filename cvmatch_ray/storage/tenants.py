"""Which tenants have data under a data directory (``config.tenant_data_dir`` says where).

The default tenant's data is the data directory itself; every other tenant's is a folder of
``<data_dir>/tenants/``. Whoever must visit every tenant's data (the recovery of accepted
uploads) lists them here.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.fs as pafs

from cvmatch_ray.config import DEFAULT_TENANT, TENANT_NAME, TENANTS_FOLDER
from cvmatch_ray.storage.objectstore import filesystem


def list_tenants(data_dir: str, storage_options: Mapping[str, str] | None = None) -> list[str]:
    """The default tenant, then every tenant with a folder under ``data_dir``, sorted.

    A folder whose name is not a tenant name is no tenant's and is skipped. On an object
    store a "folder" is a common prefix of object keys: a tenant appears once it has data.

    Raises:
        OSError: the folder of tenants could not be listed.
    """
    fs, base = filesystem(data_dir, storage_options)
    selector = pafs.FileSelector(f"{base.rstrip('/')}/{TENANTS_FOLDER}", allow_not_found=True)
    try:
        infos = fs.get_file_info(selector)
    except pa.ArrowException as e:
        raise OSError(f"the tenants of {data_dir} could not be listed") from e
    names = {info.base_name for info in infos if info.type == pafs.FileType.Directory}
    return [DEFAULT_TENANT, *sorted(n for n in names if n != DEFAULT_TENANT and TENANT_NAME.fullmatch(n))]
