// Package spooldir gives each run a private directory for its spool files
// (message bodies too large to keep in memory) and removes what dead runs
// left.
//
// A spool file holds a user's mail. A run killed with kill -9 cannot
// remove its own, so they would stay in a temporary directory forever. So
// every run spools into root/<pid>-<n>, holding an exclusive flock on
// root/<pid>-<n>.lock for as long as it lives. The lock file is created and
// locked before the directory, so a directory without a lock file is never
// a live run's. Open removes every directory under root whose lock it can
// take (its owner is dead: the kernel dropped the lock with the process) or
// that has no lock file. Runs in one process (batch) and in several
// (shards on one state directory) may call Open at the same moment.
// Directories are 0700, files are created 0600 by the spool.
package spooldir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Dir is a run's spool directory.
type Dir struct {
	Path string
	lock *os.File
}

var seq atomic.Int64

// Open creates the run's directory under root (created 0700 if needed)
// after removing the directories of runs that are gone. Errors name the
// directory. Safe for concurrent use, also across processes.
func Open(root string) (*Dir, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create spool directory %s: %w", root, err)
	}
	clean(root)
	for attempt := 0; ; attempt++ {
		p := filepath.Join(root, strconv.Itoa(os.Getpid())+"-"+strconv.FormatInt(seq.Add(1), 10))
		lock, err := lockNew(p + ".lock")
		if err == errRaced && attempt < 10 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("lock spool directory %s: %w", p, err)
		}
		if err := os.Mkdir(p, 0o700); err != nil {
			os.Remove(lock.Name())
			lock.Close()
			return nil, fmt.Errorf("create spool directory %s: %w", p, err)
		}
		return &Dir{Path: p, lock: lock}, nil
	}
}

var errRaced = errors.New("lock file replaced while it was being locked")

// lockNew creates path and takes its lock. A concurrent clean may take the
// lock first (between create and flock) and remove the file; then the lock
// taken is on a file no longer at path, and errRaced says to try another
// name.
func lockNew(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, errRaced // a cleaner holds it and is removing it
	}
	var held, named unix.Stat_t
	if unix.Fstat(int(f.Fd()), &held) != nil || unix.Stat(path, &named) != nil || held.Ino != named.Ino || held.Dev != named.Dev {
		f.Close()
		return nil, errRaced
	}
	return f, nil
}

// clean removes what dead runs left under root: directories whose lock file
// it can lock or that have none, and lock files it can lock. A directory is
// removed before its lock file, under that lock.
func clean(root string) {
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		name := e.Name()
		p := filepath.Join(root, name)
		switch {
		case e.IsDir():
			if _, err := os.Stat(p + ".lock"); os.IsNotExist(err) {
				// A live run creates its lock before its directory, so
				// this one's run died, or a cleaner was interrupted.
				os.RemoveAll(p)
			}
		case strings.HasSuffix(name, ".lock"):
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				continue
			}
			if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
				os.RemoveAll(strings.TrimSuffix(p, ".lock")) // its run is gone
				os.Remove(p)
			}
			f.Close()
		}
	}
}

// Close removes the directory and everything in it, then its lock.
func (d *Dir) Close() error {
	err := os.RemoveAll(d.Path)
	os.Remove(d.lock.Name())
	d.lock.Close()
	return err
}
