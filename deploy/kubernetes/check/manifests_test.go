// Package check validates deploy/kubernetes without a cluster.
//
// What is exercised here: every manifest decodes strictly (unknown or
// misspelt fields are errors) into the Kubernetes API types of k8s.io/api,
// which is the schema a server validates against; the fields mailhaul
// relies on are checked against each other (the Indexed Job's completions
// and MAILHAUL_SHARDS, the volumes behind --state-dir, the accounts file
// and the Secret's files that file names, restartPolicy and
// podFailurePolicy as backoffLimitPerIndex needs them, the user the image
// runs as); and the Job's environment is simulated: the mailhaul binary is
// run with the container's arguments and environment, once per
// JOB_COMPLETION_INDEX, with the mount paths mapped to directories, and
// every row of the example accounts file lands in exactly one shard. The
// binary is checked to be static (the image has no libc).
//
// What is not: no API server sees the manifests (admission, defaults,
// quotas, storage classes), no image is built or pulled, no pod runs, no
// ReadWriteMany volume's locking is tried. The copy itself is tested
// against real servers in cmd/mailhaul (TestBatchShards runs three shards
// as the Job's pods would).
//
// This is a module of its own so that the main module does not depend on
// the Kubernetes API packages; .ci/test.sh runs it.
package check

import (
	"bytes"
	"debug/elf"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const dir = ".." // deploy/kubernetes

// kustomization is the part of kustomize's schema the directory uses
// (decoded strictly too: a misspelt key fails).
type kustomization struct {
	APIVersion         string   `json:"apiVersion"`
	Kind               string   `json:"kind"`
	Resources          []string `json:"resources"`
	ConfigMapGenerator []struct {
		Name  string   `json:"name"`
		Files []string `json:"files"`
	} `json:"configMapGenerator"`
	GeneratorOptions struct {
		DisableNameSuffixHash bool `json:"disableNameSuffixHash"`
	} `json:"generatorOptions"`
}

type manifests struct {
	job, report *batchv1.Job
	pvc         *corev1.PersistentVolumeClaim
	secret      *corev1.Secret
	kust        kustomization
}

// decode reads one single-document manifest strictly into v and checks
// its apiVersion and kind.
func decode(t *testing.T, name string, v any, apiVersion, kind string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("\n---")) {
		t.Fatalf("%s: one object per file, please", name)
	}
	if err := yaml.UnmarshalStrict(data, v); err != nil {
		t.Fatalf("%s does not match the %s schema: %v", name, kind, err)
	}
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	yaml.Unmarshal(data, &tm)
	if tm.APIVersion != apiVersion || tm.Kind != kind {
		t.Fatalf("%s: %s %s, want %s %s", name, tm.APIVersion, tm.Kind, apiVersion, kind)
	}
}

func load(t *testing.T) manifests {
	t.Helper()
	var m manifests
	m.job, m.report = &batchv1.Job{}, &batchv1.Job{}
	m.pvc, m.secret = &corev1.PersistentVolumeClaim{}, &corev1.Secret{}
	decode(t, "job.yaml", m.job, "batch/v1", "Job")
	decode(t, "report-job.yaml", m.report, "batch/v1", "Job")
	decode(t, "pvc.yaml", m.pvc, "v1", "PersistentVolumeClaim")
	decode(t, "secret.example.yaml", m.secret, "v1", "Secret")
	decode(t, "kustomization.yaml", &m.kust, "kustomize.config.k8s.io/v1beta1", "Kustomization")
	return m
}

// flagValue returns the value of --name=V or --name V in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

func envValue(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// mountOf returns the mount path of the volume of spec that satisfies
// match, and whether it is read-only.
func mountOf(spec corev1.PodSpec, c corev1.Container, match func(corev1.Volume) bool) (string, bool, bool) {
	for _, v := range spec.Volumes {
		if !match(v) {
			continue
		}
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name {
				return m.MountPath, m.ReadOnly, true
			}
		}
	}
	return "", false, false
}

// under reports whether p is dir or inside it.
func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

func TestManifests(t *testing.T) {
	m := load(t)
	j := m.job.Spec
	spec := j.Template.Spec
	if len(spec.Containers) != 1 || spec.Containers[0].Name != "mailhaul" {
		t.Fatalf("want one container named mailhaul: %+v", spec.Containers)
	}
	c := spec.Containers[0]

	// An Indexed Job, one shard per completion.
	if j.CompletionMode == nil || *j.CompletionMode != batchv1.IndexedCompletion {
		t.Error("spec.completionMode must be Indexed (JOB_COMPLETION_INDEX)")
	}
	if j.Completions == nil || j.Parallelism == nil || *j.Parallelism < 1 || *j.Parallelism > *j.Completions {
		t.Fatalf("completions %v, parallelism %v: want 1 <= parallelism <= completions", j.Completions, j.Parallelism)
	}
	if v, ok := envValue(c, "MAILHAUL_SHARDS"); !ok || v != strconv.Itoa(int(*j.Completions)) {
		t.Errorf("MAILHAUL_SHARDS = %q, want spec.completions = %d", v, *j.Completions)
	}
	if _, ok := flagValue(c.Args, "--shard"); ok {
		t.Error("--shard in the Job: every pod would run the same shard")
	}
	// A failed shard retries alone; a bad file fails its index at once.
	if j.BackoffLimitPerIndex == nil || *j.BackoffLimitPerIndex < 1 {
		t.Error("spec.backoffLimitPerIndex must be set (a failed shard is retried alone)")
	}
	if j.MaxFailedIndexes == nil || *j.MaxFailedIndexes < *j.Completions {
		t.Error("spec.maxFailedIndexes should let every other shard finish")
	}
	if spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Error("restartPolicy must be Never (backoffLimitPerIndex and podFailurePolicy need it)")
	}
	failIndexOn2 := false
	if j.PodFailurePolicy != nil {
		for _, r := range j.PodFailurePolicy.Rules {
			if r.Action == batchv1.PodFailurePolicyActionFailIndex && r.OnExitCodes != nil && r.OnExitCodes.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn &&
				slices.Contains(r.OnExitCodes.Values, 2) && r.OnExitCodes.ContainerName != nil && *r.OnExitCodes.ContainerName == c.Name {
				failIndexOn2 = true
			}
		}
	}
	if !failIndexOn2 {
		t.Error("podFailurePolicy: exit code 2 (bad accounts file) should FailIndex")
	}

	// What the container runs, and the volumes behind its paths.
	if len(c.Args) < 2 || c.Args[0] != "batch" {
		t.Fatalf("args %q: want batch ... ACCOUNTS.csv", c.Args)
	}
	state, ok := flagValue(c.Args, "--state-dir")
	if !ok {
		t.Fatal("no --state-dir: the state would be lost with the pod")
	}
	stateMount, ro, ok := mountOf(spec, c, func(v corev1.Volume) bool {
		return v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == m.pvc.Name
	})
	if !ok || ro || !under(state, stateMount) {
		t.Errorf("--state-dir %s is not on the writable claim %s (mounted at %q)", state, m.pvc.Name, stateMount)
	}
	if *j.Parallelism > 1 && !slices.Contains(m.pvc.Spec.AccessModes, corev1.ReadWriteMany) {
		t.Error("several pods at once share the state volume: it must be ReadWriteMany")
	}
	accounts := c.Args[len(c.Args)-1]
	if len(m.kust.ConfigMapGenerator) != 1 || !m.kust.GeneratorOptions.DisableNameSuffixHash {
		t.Fatalf("kustomization: want one ConfigMap generator with a stable name: %+v", m.kust)
	}
	gen := m.kust.ConfigMapGenerator[0]
	cfgMount, _, ok := mountOf(spec, c, func(v corev1.Volume) bool { return v.ConfigMap != nil && v.ConfigMap.Name == gen.Name })
	if !ok || filepath.Dir(accounts) != cfgMount || !slices.Contains(gen.Files, filepath.Base(accounts)) {
		t.Errorf("accounts file %s is not the ConfigMap %s (files %v) mounted at %q", accounts, gen.Name, gen.Files, cfgMount)
	}
	for _, r := range append(append([]string{}, m.kust.Resources...), gen.Files...) {
		if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
			t.Errorf("kustomization: %v", err)
		}
	}
	secMount, ro, ok := mountOf(spec, c, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == m.secret.Name })
	if !ok || !ro {
		t.Errorf("the Secret %s is not mounted read-only", m.secret.Name)
	}
	// Every file the accounts file names is a key of the Secret.
	data, err := os.ReadFile(filepath.Join(dir, filepath.Base(accounts)))
	if err != nil {
		t.Fatal(err)
	}
	r := csv.NewReader(bytes.NewReader(data))
	r.Comment = '#'
	rows, err := r.ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("accounts file: %v", err)
	}
	for i, col := range rows[0] {
		if !strings.HasSuffix(col, "_file") {
			continue
		}
		for _, row := range rows[1:] {
			if p := row[i]; p != "" {
				if _, key := m.secret.StringData[filepath.Base(p)]; filepath.Dir(p) != secMount || !key {
					t.Errorf("%s %s is no file of the Secret mounted at %s", col, p, secMount)
				}
			}
		}
	}
	// Non-root, read-only root: /tmp must be a volume.
	sc := spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != 65532 || sc.FSGroup == nil {
		t.Error("the pod must run as the image's nonroot user 65532 with an fsGroup (the volume and the Secret's files readable)")
	}
	if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem expected")
	} else if tmp, _, ok := mountOf(spec, c, func(v corev1.Volume) bool { return v.EmptyDir != nil }); !ok || tmp != "/tmp" {
		t.Error("a read-only root needs an emptyDir at /tmp (large bodies are spooled there)")
	}
	if c.Resources.Limits.Memory().IsZero() {
		t.Error("no memory limit")
	}

	// The report Job reads the same state and file, and takes no shard.
	rs := m.report.Spec.Template.Spec
	rc := rs.Containers[0]
	if !slices.Contains(rc.Args, "--report-only") || rc.Args[len(rc.Args)-1] != accounts {
		t.Errorf("report job args %q", rc.Args)
	}
	if v, _ := flagValue(rc.Args, "--state-dir"); v != state {
		t.Errorf("report job --state-dir %q, the batch's is %q", v, state)
	}
	if _, ok := envValue(rc, "MAILHAUL_SHARDS"); ok {
		t.Error("the report job must not be sharded")
	}
	if p, _, ok := mountOf(rs, rc, func(v corev1.Volume) bool {
		return v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == m.pvc.Name
	}); !ok || p != stateMount {
		t.Error("the report job does not mount the state volume where the batch does")
	}
}

// buildMailhaul builds the static binary of the repository.
func buildMailhaul(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mailhaul")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/mailhaul")
	cmd.Dir = filepath.Join(dir, "..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestJobEnvironment runs mailhaul as each pod of the Job would start it
// (the container's args and env, JOB_COMPLETION_INDEX = 0..completions-1),
// with --validate (the example's servers do not exist): the example file
// is valid there, its secrets readable at their mount path, and every row
// is in exactly one shard. Then the report Job's command on the empty
// state: every account pending, exit 1.
func TestJobEnvironment(t *testing.T) {
	m := load(t)
	bin := buildMailhaul(t)
	c := m.job.Spec.Template.Spec.Containers[0]
	tmp := t.TempDir()
	// Mount paths -> directories.
	paths := map[string]string{}
	for _, vm := range c.VolumeMounts {
		paths[vm.MountPath] = filepath.Join(tmp, strings.Trim(vm.MountPath, "/"))
		os.MkdirAll(paths[vm.MountPath], 0o700)
	}
	var remap func(string) string
	remap = func(s string) string {
		for mp, d := range paths {
			if under(s, mp) {
				return d + strings.TrimPrefix(s, mp)
			}
		}
		if v, ok := strings.CutPrefix(s, "--state-dir="); ok {
			return "--state-dir=" + remap(v)
		}
		return s
	}
	secMount, _, _ := mountOf(m.job.Spec.Template.Spec, c, func(v corev1.Volume) bool { return v.Secret != nil })
	for k, v := range m.secret.StringData {
		os.WriteFile(filepath.Join(paths[secMount], k), []byte(v), 0o440)
	}
	accounts := c.Args[len(c.Args)-1]
	data, _ := os.ReadFile(filepath.Join(dir, filepath.Base(accounts)))
	os.WriteFile(remap(accounts), bytes.ReplaceAll(data, []byte(secMount+"/"), []byte(paths[secMount]+"/")), 0o644)

	var args []string
	for _, a := range c.Args {
		args = append(args, remap(a))
	}
	env := append(os.Environ(), "JOB_COMPLETION_INDEX=")
	for _, e := range c.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	n := int(*m.job.Spec.Completions)
	re := regexp.MustCompile(`(\d+) accounts, every row valid\nshard (\d+)/(\d+): (\d+) accounts`)
	total, rows := 0, -1
	for k := 0; k < n; k++ {
		cmd := exec.Command(bin, append([]string{args[0], "--validate"}, args[1:]...)...)
		cmd.Env = append(env, fmt.Sprintf("JOB_COMPLETION_INDEX=%d", k))
		out, err := cmd.CombinedOutput()
		mm := re.FindStringSubmatch(string(out))
		if err != nil || mm == nil || mm[2] != strconv.Itoa(k) || mm[3] != strconv.Itoa(n) {
			t.Fatalf("pod %d: %v\n%s", k, err, out)
		}
		rows, _ = strconv.Atoi(mm[1])
		size, _ := strconv.Atoi(mm[4])
		total += size
	}
	if total != rows || rows < 2 {
		t.Errorf("the shards hold %d accounts, the file %d", total, rows)
	}

	rc := m.report.Spec.Template.Spec.Containers[0]
	var rargs []string
	for _, a := range rc.Args {
		rargs = append(rargs, remap(a))
	}
	cmd := exec.Command(bin, rargs...)
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	ee, _ := err.(*exec.ExitError)
	if ee == nil || ee.ExitCode() != 1 || !strings.Contains(string(out), fmt.Sprintf("%d accounts: 0 done", rows)) {
		t.Errorf("report job on an empty state: %v\n%s", err, out)
	}
}

// TestStaticBinary: the binary the image ships has no dynamic loader and
// no shared library, and the image runs it as the user the Job expects.
func TestStaticBinary(t *testing.T) {
	bin := buildMailhaul(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a dynamic loader (PT_INTERP): not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs %v", libs)
	}
	cf, err := os.ReadFile(filepath.Join(dir, "..", "container", "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/mailhaul", "USER 65532:65532", "distroless/static"} {
		if !bytes.Contains(cf, []byte(want)) {
			t.Errorf("Containerfile lacks %q", want)
		}
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "mailhaul ") {
		t.Errorf("--version: %v %q", err, out)
	}
}
