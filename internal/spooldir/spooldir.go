// Package spooldir gives each run a private directory for its spool files
// (message bodies too large to keep in memory) and removes what dead runs
// left.
//
// A spool file holds a user's mail. A run killed with kill -9 cannot
// remove its own, so they would stay in a temporary directory forever. So
// every run spools into root/<pid>-<n>, holding an exclusive flock on
// root/<pid>-<n>/.lock for as long as it lives; Open removes every
// directory under root whose lock it can take (its owner is dead: the
// kernel dropped the lock with the process). Directories are 0700, files
// are created 0600 by the spool.
package spooldir

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
// directory.
func Open(root string) (*Dir, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create spool directory %s: %w", root, err)
	}
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(root, e.Name())
		f, err := os.Open(filepath.Join(p, ".lock"))
		if err != nil {
			if os.IsNotExist(err) {
				os.RemoveAll(p) // never locked: a run that died while creating it
			}
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(p) // its run is gone
		}
		f.Close()
	}
	p := filepath.Join(root, strconv.Itoa(os.Getpid())+"-"+strconv.FormatInt(seq.Add(1), 10))
	if err := os.Mkdir(p, 0o700); err != nil {
		return nil, fmt.Errorf("create spool directory %s: %w", p, err)
	}
	lock, err := os.OpenFile(filepath.Join(p, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err != nil {
		os.RemoveAll(p)
		return nil, fmt.Errorf("lock spool directory %s: %w", p, err)
	}
	return &Dir{Path: p, lock: lock}, nil
}

// Close removes the directory and everything in it.
func (d *Dir) Close() error {
	err := os.RemoveAll(d.Path)
	d.lock.Close()
	return err
}
