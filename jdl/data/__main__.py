"""Command line for jdl's datasets: ``python -m jdl.data {list,info,prepare} ...``.

    python -m jdl.data list
    python -m jdl.data info fashion_mnist
    python -m jdl.data prepare fashion_mnist mnist1d   # fast when already prepared
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from jdl import data


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status."""
  parser = argparse.ArgumentParser(prog="python -m jdl.data", description="jdl's datasets")
  commands = parser.add_subparsers(dest="command", required=True)
  commands.add_parser("list", help="list the dataset names")
  info_parser = commands.add_parser("info", help="show what jdl knows about a dataset")
  info_parser.add_argument("name")
  prepare_parser = commands.add_parser("prepare", help="prepare datasets (and their .npy cache) for fast loading")
  prepare_parser.add_argument("names", nargs="+", metavar="name")
  prepare_parser.add_argument("--data-dir", default=None, help="prepared datasets' directory (default: $JDL_TFDS_DIR, $TFDS_DATA_DIR, ~/tensorflow_datasets)")
  prepare_parser.add_argument("--no-download", action="store_true", help="use local files only")
  args = parser.parse_args(argv)

  try:
    if args.command == "list":
      for name in data.list_datasets():
        print(name)
    elif args.command == "info":
      meta = data.info(args.name)
      for field, value in vars(meta).items():
        print(f"{field}: {dict(value) if field == 'splits' else value}")
    else:
      for name in args.names:
        data.info(name)  # Unknown names fail before any work.
      for name in args.names:
        start = time.perf_counter()
        where = data.prepare(name, data_dir=args.data_dir, download=False if args.no_download else None)
        print(f"{name}: {'ready in ' + str(where) if where else 'in memory, nothing to prepare'} ({time.perf_counter() - start:.1f} s)")
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
