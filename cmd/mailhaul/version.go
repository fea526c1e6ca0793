package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// version, when set at link time (-ldflags "-X main.version=v1.2.3"),
// overrides the module version from the build info (a container image
// built from a checkout has "(devel)" there).
var version string

// buildVersion is what --version prints and every report names: the
// module version, the VCS revision and time the binary was built from
// (with "+dirty" when the work tree had changes), and the Go version.
// Built without VCS information (go build -buildvcs=false, a source
// archive) the revision is "unknown".
func buildVersion() string {
	v, rev, when, dirty := "(devel)", "unknown", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
				if len(rev) > 12 {
					rev = rev[:12]
				}
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if version != "" {
		v = version
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (revision %s", v, rev)
	if dirty {
		b.WriteString("+dirty")
	}
	if when != "" {
		b.WriteString(", " + when)
	}
	fmt.Fprintf(&b, ", %s)", runtime.Version())
	return b.String()
}
