"""The subject of a bundle: the digests of a model's files and the root over them.

`manifest` is the data model (entries, name rules, root digest, CBOR form);
`files` reads and hashes files, in parallel, into a `Subject`.
"""

from attest.subject.files import DEFAULT_CHUNK, hash_file, hash_files
from attest.subject.manifest import (
    ALGORITHM,
    LAYOUT,
    FileDigest,
    Subject,
    model_signing_root,
    name_sort_key,
    root_digest,
)

__all__ = [
    "ALGORITHM",
    "DEFAULT_CHUNK",
    "LAYOUT",
    "FileDigest",
    "Subject",
    "hash_file",
    "hash_files",
    "model_signing_root",
    "name_sort_key",
    "root_digest",
]
