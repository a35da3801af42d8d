// Package powerfs is a FUSE file system that loses power: every write stays
// volatile until it is synced, and a power cut drops everything that was not.
// The crash torture (crashtest) runs durastream's data directory on it, so a
// missing fsync shows up as a lost acknowledged write instead of going
// unnoticed on a machine that never loses power.
//
// A Disk is the durable medium: a backing directory on the real file system
// with one file per inode holding exactly that inode's durable bytes, and the
// durable namespace (directories and their entries) in memory. A Mount is one
// power-on of the Disk: a FUSE mount whose view is the Disk's durable state
// plus everything written since, kept in the daemon's memory. PowerCut
// unmounts it and throws the volatile part away; the next Mount starts from
// the durable state alone, on a fresh superblock, so no kernel page cache
// survives the cut either.
//
// # The durability model
//
// File data. Writes (write(2), and the dirty pages of shared mappings, which
// the kernel writes back to the daemon as WRITE requests) change the file in
// the daemon's memory only. fsync(2), fdatasync(2) and msync(MS_SYNC) (which
// the kernel turns into write-back plus FSYNC) make the file's whole
// content and size durable: the daemon writes its dirty pages and size into
// the backing file. fdatasync is fsync here. Nothing else makes data
// durable: no data=ordered flush at a journal commit, no periodic write-back.
// A size change (a write past the end, ftruncate, fallocate) is part of the
// content: durable at the file's next sync, never by a namespace commit
// (stricter than ext4, whose journal carries the size).
//
// syncfs(2) and sync(2): the kernel does not forward them to a FUSE daemon
// (it writes dirty pages back, which land in the daemon's memory, and sends
// no FSYNC), so, as on every FUSE file system other than virtiofs, they make
// nothing durable. A program that trusts syncfs loses data here.
//
// The namespace. Creating, renaming and removing files and directories are
// volatile operations, journaled in order. By default (JournalPerInode) a
// sync commits only what the synced inode needs, close to ext4's fast
// commits and to the least POSIX promises:
//
//   - fsync of a directory commits every pending operation that changed an
//     entry in it, and those that named the directory itself (its mkdir, a
//     rename of it);
//   - fsync of a file commits the operations that named it (its create,
//     renames, its unlink), as ext4 does for a new file's entry;
//   - with each committed operation, every earlier pending one it depends
//     on: operations on the same entry (directory and name), on the same
//     inode, or that created a directory it changes. A rename commits as a
//     whole: the old name and the new one change together.
//
// Options.Journal = JournalGlobal is the other model, ext4 without
// fast_commit: any fsync commits every pending namespace operation. The
// per-inode model catches a missing directory sync (the name is lost); the
// global one a name made durable before its file's content (a rename of a
// file never synced commits with the next unrelated fsync and names an
// empty file). Disk.SetJournal changes it from one power-on to the next. In
// both, a durable entry names an inode whose content is whatever was last
// synced (nothing, for a file never synced: an empty file).
//
// # What else it does
//
// fallocate reserves nothing (there is no space limit) but sets the size as
// asked; with Options.NoFallocate it fails with EOPNOTSUPP, as on file
// systems without it, so programs fall back to writing zeros. O_DIRECT opens
// fail with EINVAL unless Options.DirectIO. There are no hard links,
// symbolic links, device nodes, extended attributes or space limits; file
// locks are the kernel's local ones. Writes that arrive after a power cut
// (the kernel flushing dirty pages of the dead mount) are acknowledged and
// ignored; syncs after a power cut fail with EIO.
//
// Map files of a mount only from another process (the server under test
// is one): a page fault on a FUSE mapping blocks its thread without the Go
// scheduler knowing, so in the daemon's own process a stop-the-world can
// wait for the faulting goroutine while the fault waits for the daemon.
//
// Mounting needs /dev/fuse and root: there is no fusermount here, so the
// mount is made with mount(2) directly (go-fuse's DirectMountStrict).
package powerfs
