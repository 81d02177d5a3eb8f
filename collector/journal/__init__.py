"""The gateway's local journal: each row is appended to an on-disk segment before the response is acknowledged,
and a committer thread moves sealed segments into the store in batches, exactly once (records.py: the frame;
segments.py: the directory; writer.py: `Journal`, append and fsync; committer.py: `Committer`)."""
