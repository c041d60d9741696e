"""Board support packages: one folder per board, and the code that reads them.

Each board folder (``rpi4/``, ``rpi5/``, ``jetson-orin-nano/``, ``x86-64-efi/``)
holds ``board.yaml`` (architecture, compatible string, kernel command line,
serial console, boot-control mechanism, partition layout, boot files),
``boot/`` (boot partition files) and ``rootfs/`` (files added to every image
for the board).  The board's Python code (its boot-control backend) lives
beside its data.  :mod:`bsp.boards` loads and validates the folders; users
add boards with their own folders (``--bsp-path``, see ``docs/boards.md``).
"""
