"""Read a finished dataset in parallel through obstore: bounded concurrency, retries, a per-object report, atomic
files, large objects in parallel byte ranges.

Why obstore (Rust object_store bindings): botocore spends milliseconds of CPU per GetObject under the GIL, so on
2 cores (or a 1-vCPU Lambda) no boto3 design reached the latency limit, and the former two-process reader could
not run in Lambda at all. obstore signs, sends and reads in Rust with the GIL released, so one process is bounded
by requests in flight only; two processes measured slower than one. The figures, against serial boto3, s5cmd
and `aws s3 cp`, are bench/reader.py's, in docs/benchmarks.md.

Threads, not asyncio: `concurrency` threads make blocking obstore calls (the GIL is released while they wait).
Measured against asyncio over obstore's async API at the same concurrency, threads were as fast at half the CPU:
an asyncio wake-up per request costs more than a thread switch.

Large objects (at least `large_threshold` bytes, ETag known, a file destination): split into `part_size` byte
ranges, each a work item like any small object, streamed in `chunk_size` pieces with os.pwrite at its offset into
a preallocated temp file. Parts of one object are queued together, so few objects are open at once and memory
is ~ranges in flight x chunk_size whatever the object size. At most `range_concurrency` ranges are in flight:
a small object costs a request's latency, a range its bandwidth. Profiled (py-spy, perf), a large read's CPU is
mostly the kernel's copies, socket to process and process to file, which every client pays; more ranges only
added buffers and thread wake-ups. What is left on top: obstore 0.12's stream yields Python bytes, each chunk
zero-filled and copied once more (obstore pull request #133 would yield its zero-copy Bytes); a whole range as
one Bytes (get_range) avoids that but faults in a fresh buffer per range, which cost more.

Retries: obstore's own retries are off (RetryConfig max_retries=0) and the reader retries, so every attempt is
counted in the report and one policy (exponential backoff, full jitter) covers 5xx, SlowDown, throttling,
connection errors and bodies that break mid-stream; a ranged part resumes at the byte where it broke. Permanent
errors (NoSuchKey, AccessDenied, PreconditionFailed: the object changed since it was listed, since every GET
carries If-Match with the listed ETag) are reported at once. `fetch` never raises half-way: it returns a report
with every object's outcome, attempts and last error. Files are written under a temp name and renamed, so a
failed object leaves nothing.

Credentials and endpoint, where boto3 finds them: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN
from the environment (the Lambda role's credentials arrive that way); otherwise boto3's own chain (profiles,
AWS_PROFILE, SSO, assume-role, web identity, container and instance roles) through obstore's
Boto3CredentialProvider, refreshed as boto3 refreshes. Region: AWS_REGION, AWS_DEFAULT_REGION, then the profile.
Endpoint: the `endpoint_url` argument, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL (path-style; http allowed for it).
obstore cannot address keys with empty, "." or ".." path segments, and reads "dir/" as "dir": Firehose never
writes such keys.

Any other store, by URL (gs://, az://, an HTTP folder such as an artifact repository): stores.py. The other
half, writing the downstream's output in parallel: writer.py (DatasetWriter).
"""


from streamwatch.reader.dataset import DatasetReader
from streamwatch.reader.files import FileSink, UnsafeName, UnsafeTarget, check_target, unsafe_name
from streamwatch.reader.objects import (
    CHUNK,
    DEFAULT_CONCURRENCY,
    PART_SIZE,
    LineCountSink,
    ObjectInfo,
    ObjectResult,
    ReadError,
    ReadReport,
    Sink,
    list_objects,
    make_store,
    stream_object,
)
from streamwatch.reader.stores import BadLocation, Location, parse_location
from streamwatch.reader.writer import DatasetWriter, WriteReport, WriteResult

__all__ = ["CHUNK", "DEFAULT_CONCURRENCY", "PART_SIZE", "BadLocation", "DatasetReader", "DatasetWriter", "FileSink",
           "LineCountSink", "Location", "ObjectInfo", "ObjectResult", "ReadError", "ReadReport", "Sink", "UnsafeName",
           "UnsafeTarget", "WriteReport", "WriteResult", "check_target", "list_objects", "make_store",
           "parse_location", "stream_object", "unsafe_name"]
