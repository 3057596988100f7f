from tui.cli import main

# guarded: a process spawned for parallel work (tui.wal.scan) imports this module again
if __name__ == "__main__":
    raise SystemExit(main())
