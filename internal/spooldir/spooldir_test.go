package spooldir

import (
	"golang.org/x/sys/unix"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// TestDeadRunsAreCleaned: a directory whose owner holds its lock stays;
// one whose owner is gone (here: a child process that locked it and was
// killed) is removed by the next Open, and so is one never locked.
func TestDeadRunsAreCleaned(t *testing.T) {
	root := t.TempDir()
	live, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	os.WriteFile(filepath.Join(live.Path, "mailhaul-spool-1"), []byte("mail"), 0o600)
	dead := filepath.Join(root, "999999-1")
	os.Mkdir(dead, 0o700)
	os.WriteFile(dead+".lock", nil, 0o600)
	os.WriteFile(filepath.Join(dead, "mailhaul-spool-2"), []byte("mail"), 0o600)
	// A lock held by another live process keeps its directory.
	held := filepath.Join(root, "12345-1")
	os.Mkdir(held, 0o700)
	os.WriteFile(held+".lock", nil, 0o600)
	cmd := exec.Command("flock", held+".lock", "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("flock(1): %v", err)
	}
	defer cmd.Process.Kill()
	for i := 0; i < 100; i++ { // wait until flock(1) holds it
		f, _ := os.Open(held + ".lock")
		if f == nil {
			break
		}
		if err := tryLock(f); err != nil {
			f.Close()
			break
		}
		unlock(f)
		f.Close()
		exec.Command("sleep", "0.05").Run()
	}
	// A directory without a lock file: its run died, or a cleaner was
	// interrupted between removing the directory and its lock.
	orphan := filepath.Join(root, "999998-1")
	os.Mkdir(orphan, 0o700)
	next, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("a spool directory without a lock file is still there")
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("a dead run's spool directory is still there")
	}
	if _, err := os.Stat(filepath.Join(live.Path, "mailhaul-spool-1")); err != nil {
		t.Errorf("a live run's spool was removed: %v", err)
	}
	if _, err := os.Stat(held); err != nil {
		t.Errorf("a directory locked by a live process was removed: %v", err)
	}
	if fi, _ := os.Stat(next.Path); fi == nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("spool directory mode %v", fi.Mode())
	}
}

func tryLock(f *os.File) error { return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) }
func unlock(f *os.File)        { unix.Flock(int(f.Fd()), unix.LOCK_UN) }

// TestConcurrentOpen: runs opening at the same moment (a batch's accounts,
// shards on one state directory) never remove each other's directories.
func TestConcurrentOpen(t *testing.T) {
	root := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				d, err := Open(root)
				if err != nil {
					errs <- err
					return
				}
				f := filepath.Join(d.Path, "mailhaul-spool-1")
				if err := os.WriteFile(f, []byte("mail"), 0o600); err != nil {
					errs <- err
					return
				}
				if _, err := os.Stat(f); err != nil {
					errs <- err
					return
				}
				d.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("%d entries left after every run closed", len(ents))
	}
}
