// Package testserver starts mail servers for tests: a real Dovecot (IMAP,
// IMAPS, POP3) run as a child process with a throwaway configuration.
//
// StartDovecot never uses a system-wide Dovecot: every call writes its own
// dovecot.conf, listens on free loopback ports and keeps every file (mail,
// sockets, state, log) in a private temporary directory that is removed when
// the test ends. When the dovecot binary is missing the test is skipped,
// except under CI=true, where it fails: CI must exercise the real server.
package testserver

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Dovecot is a running Dovecot instance owned by one test.
type Dovecot struct {
	// Dir holds everything of this instance (config, mail, log).
	Dir string
	// IMAPAddr (plain, STARTTLS available), IMAPSAddr (implicit TLS),
	// POP3Addr (plain, STLS available) and POP3SAddr (implicit TLS) are
	// "127.0.0.1:port".
	IMAPAddr, IMAPSAddr, POP3Addr, POP3SAddr string
	// ConfFile is the generated dovecot.conf (for dovecot-lda -c, doveadm -c).
	ConfFile string

	// CAFile is the PEM certificate the server presents (self-signed, so
	// it is its own CA); CertPool holds it.
	CAFile   string
	CertPool *x509.CertPool
	// LogFile is Dovecot's log, dumped into the test log on failure.
	LogFile string

	users     map[string]string
	uid, gid  int
	bin, conf string
	cmd       *exec.Cmd
	exited    chan struct{}
}

// Option configures StartDovecot.
type Option func(*config)

type config struct {
	users     map[string]string
	masters   map[string]string
	separator string
	prefix    string
	extra     string
	mailboxes [][2]string // name, special use
	oauth2URL string
	remove    func(dir string) error // default os.RemoveAll
}

// WithUser adds an account (several may be added). Without any, the server
// has the single user "alice" with password "secret".
func WithUser(name, password string) Option {
	return func(c *config) { c.users[name] = password }
}

// WithMasterUser adds a Dovecot master user: it logs in as any user with
// AUTHENTICATE PLAIN and the target as authorization identity.
func WithMasterUser(name, password string) Option {
	return func(c *config) { c.masters[name] = password }
}

// WithNamespace sets the hierarchy separator and personal namespace prefix
// (default "/" and ""); ".", "INBOX." imitates Courier.
func WithNamespace(separator, prefix string) Option {
	return func(c *config) { c.separator, c.prefix = separator, prefix }
}

// WithMailbox declares a folder with a special-use attribute in the
// namespace (auto-created). Without any, the server has Drafts, Sent,
// Trash and Junk with their attributes.
func WithMailbox(name, specialUse string) Option {
	return func(c *config) { c.mailboxes = append(c.mailboxes, [2]string{name, specialUse}) }
}

// WithOAuth2 adds Dovecot's oauth2 passdb for the XOAUTH2 and OAUTHBEARER
// mechanisms: a bearer token is checked by POSTing it to introspectionURL
// (RFC 7662, e.g. OAuth2Server.URL), which must answer "active": true and
// the account's name as "username". The accounts still need WithUser (the
// userdb); their passwords keep working with LOGIN and PLAIN.
func WithOAuth2(introspectionURL string) Option {
	return func(c *config) { c.oauth2URL = introspectionURL }
}

// WithoutAuthDelay turns off Dovecot's delay of failed logins (2 seconds,
// and a per-IP penalty growing to 15), for tests that fail logins on
// purpose.
func WithoutAuthDelay() Option {
	return WithConfig("auth_failure_delay = 0\nservice anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}")
}

// WithConfig appends raw configuration text to dovecot.conf.
func WithConfig(text string) Option {
	return func(c *config) { c.extra += "\n" + text + "\n" }
}

// WithRemove sets what the cleanup does with the server's directory once
// the server is stopped (default: os.RemoveAll). Benchmarks use it to
// keep the mail files until the whole run is over: on a file system
// without a journal, ext4 passes over inodes freed in the last minute or
// more when it allocates new ones, so a destination written right after
// another was deleted spends seconds in the kernel (see bench/).
func WithRemove(remove func(dir string) error) Option {
	return func(c *config) { c.remove = remove }
}

// StartDovecot starts a Dovecot for the test and stops it in t.Cleanup.
func StartDovecot(t testing.TB, opts ...Option) *Dovecot {
	t.Helper()
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		for _, p := range []string{"/usr/sbin/dovecot", "/usr/local/sbin/dovecot"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("dovecot not installed (CI=true requires it; apt-get install dovecot-imapd dovecot-pop3d)")
		}
		t.Skip("dovecot not installed (apt-get install dovecot-imapd dovecot-pop3d)")
	}
	c := &config{users: map[string]string{}, masters: map[string]string{}, separator: "/"}
	for _, o := range opts {
		o(c)
	}
	if len(c.users) == 0 {
		c.users["alice"] = "secret"
	}
	if len(c.mailboxes) == 0 {
		c.mailboxes = [][2]string{{"Drafts", `\Drafts`}, {"Sent", `\Sent`}, {"Trash", `\Trash`}, {"Junk", `\Junk`}}
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		d, err := start(t, bin, c)
		if err == nil {
			return d
		}
		lastErr = err
	}
	t.Fatalf("start dovecot: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string, c *config) (*Dovecot, error) {
	// A short private directory: Dovecot's unix sockets live under it and
	// socket paths are limited to ~108 bytes (t.TempDir can be longer).
	dir, err := os.MkdirTemp("", "mhdc")
	if err != nil {
		return nil, err
	}
	d := &Dovecot{Dir: dir, users: c.users, exited: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			d.stop()
			os.RemoveAll(dir)
		}
	}()
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	internalUser, loginUser := "", ""
	if os.Geteuid() == 0 {
		// Dovecot refuses mail access as root: mail belongs to nobody.
		d.uid, d.gid = 65534, 65534
		if u, err := user.Lookup("nobody"); err == nil {
			d.uid, _ = strconv.Atoi(u.Uid)
			d.gid, _ = strconv.Atoi(u.Gid)
		}
		internalUser, loginUser = "dovecot", "dovenull"
		if _, err := user.Lookup("dovecot"); err != nil {
			internalUser = "nobody"
		}
		if _, err := user.Lookup("dovenull"); err != nil {
			loginUser = "nobody"
		}
	} else {
		u, err := user.Current()
		if err != nil {
			return nil, err
		}
		d.uid, d.gid = os.Getuid(), os.Getgid()
		internalUser, loginUser = u.Username, u.Username
	}
	for _, sub := range []string{"run", "state", "mail", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	for name := range c.users {
		for _, p := range []string{filepath.Join(dir, "mail", name), filepath.Join(dir, "home", name)} {
			if err := os.MkdirAll(p, 0o700); err != nil {
				return nil, err
			}
			if err := os.Chown(p, d.uid, d.gid); err != nil && os.Geteuid() == 0 {
				return nil, err
			}
		}
	}
	certPEM, keyPEM, err := selfSignedCert()
	if err != nil {
		return nil, err
	}
	d.CAFile = filepath.Join(dir, "cert.pem")
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(d.CAFile, certPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	d.CertPool = x509.NewCertPool()
	d.CertPool.AppendCertsFromPEM(certPEM)

	var pw strings.Builder
	for name, pass := range c.users {
		fmt.Fprintf(&pw, "%s:{PLAIN}%s:%d:%d::%s::\n", name, pass, d.uid, d.gid, filepath.Join(dir, "home", name))
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(pw.String()), 0o644); err != nil {
		return nil, err
	}
	var mpw strings.Builder
	for name, pass := range c.masters {
		fmt.Fprintf(&mpw, "%s:{PLAIN}%s\n", name, pass)
	}
	if err := os.WriteFile(filepath.Join(dir, "masters"), []byte(mpw.String()), 0o644); err != nil {
		return nil, err
	}

	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	d.IMAPAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	d.IMAPSAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	d.POP3Addr = fmt.Sprintf("127.0.0.1:%d", ports[2])
	d.POP3SAddr = fmt.Sprintf("127.0.0.1:%d", ports[3])
	d.LogFile = filepath.Join(dir, "dovecot.log")

	masterPassdb := ""
	if len(c.masters) > 0 {
		masterPassdb = fmt.Sprintf("passdb {\n  driver = passwd-file\n  master = yes\n  pass = yes\n  args = scheme=PLAIN %s\n}\n", filepath.Join(dir, "masters"))
	}
	mechanisms := "plain login"
	oauth2Passdb, passwdMechs := "", ""
	if c.oauth2URL != "" {
		if strings.ContainsAny(c.oauth2URL, "\r\n") {
			return nil, fmt.Errorf("oauth2 introspection URL %q: line break", c.oauth2URL)
		}
		oconf := filepath.Join(dir, "dovecot-oauth2.conf.ext")
		text := fmt.Sprintf("introspection_mode = post\nintrospection_url = %s\nusername_attribute = username\nactive_attribute = active\nactive_value = true\ntimeout_msecs = 10000\n", c.oauth2URL)
		if err := os.WriteFile(oconf, []byte(text), 0o644); err != nil {
			return nil, err
		}
		mechanisms += " xoauth2 oauthbearer"
		oauth2Passdb = fmt.Sprintf("passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = %s\n}\n", oconf)
		// A token is never compared with the account's password.
		passwdMechs = "  mechanisms = plain login\n"
	}
	conf := fmt.Sprintf(`# generated by internal/testserver for one test
protocols = imap pop3
listen = 127.0.0.1
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
info_log_path = %[1]s/dovecot.log
ssl = yes
ssl_cert = <%[2]s
ssl_key = <%[3]s
auth_mechanisms = %[16]s
disable_plaintext_auth = no
mail_max_userip_connections = 100
first_valid_uid = %[4]d
first_valid_gid = %[5]d
default_internal_user = %[6]s
default_login_user = %[7]s
mail_location = maildir:%[1]s/mail/%%u
mail_attribute_dict =
auth_verbose = yes
%[8]s%[17]s
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/passwd
%[18]s}
userdb {
  driver = passwd-file
  args = username_format=%%u %[1]s/passwd
}
namespace inbox {
  inbox = yes
  separator = %[9]s
  prefix = %[10]s
%[15]s}
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = %[11]d
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = %[12]d
    ssl = yes
  }
}
service pop3-login {
  chroot =
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[13]d
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = %[19]d
    ssl = yes
  }
}
service submission-login {
  inet_listener submission {
    port = 0
  }
}
service lmtp {
  unix_listener lmtp {
    mode = 0600
  }
}
%[14]s
`, dir, d.CAFile, keyFile, d.uid, d.gid, internalUser, loginUser, masterPassdb,
		c.separator, c.prefix, ports[0], ports[1], ports[2], c.extra, mailboxConf(c.mailboxes),
		mechanisms, oauth2Passdb, passwdMechs, ports[3])
	confFile := filepath.Join(dir, "dovecot.conf")
	d.ConfFile = confFile
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		return nil, err
	}

	d.bin, d.conf = bin, confFile
	if err := d.launch(); err != nil {
		return nil, err
	}
	if err := d.waitReady(15 * time.Second); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, d.logs())
	}
	ok = true
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dovecot log (%s):\n%s", dir, d.logs())
		}
		d.stop()
		if c.remove != nil {
			if err := c.remove(dir); err != nil {
				t.Logf("remove dovecot directory %s: %v", dir, err)
			}
			return
		}
		os.RemoveAll(dir)
	})
	return d, nil
}

// launch starts the dovecot process on the instance's configuration.
func (d *Dovecot) launch() error {
	cmd := exec.Command(d.bin, "-F", "-c", d.conf)
	cmd.Dir = d.Dir
	out, err := os.OpenFile(filepath.Join(d.Dir, "stderr.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("run %s: %w", d.bin, err)
	}
	d.cmd = cmd
	exited := make(chan struct{})
	d.exited = exited
	go func() {
		cmd.Wait()
		out.Close()
		close(exited)
	}()
	return nil
}

// Kill kills the server at once (SIGKILL to its process group: every
// connection dies as if the machine went away); mail and configuration
// stay, and Start brings it back on the same ports.
func (d *Dovecot) Kill() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	<-d.exited
	d.cmd = nil
}

// Start starts a server stopped by Kill again and waits until it answers.
func (d *Dovecot) Start() error {
	if d.cmd != nil {
		return nil
	}
	// Dovecot refuses to start while its old master's pid file and
	// sockets are there: they belong to the killed process.
	os.Remove(filepath.Join(d.Dir, "run", "master.pid"))
	if err := d.launch(); err != nil {
		return err
	}
	return d.waitReady(15 * time.Second)
}

// waitReady waits until the IMAP port sends its greeting.
func (d *Dovecot) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			return errors.New("dovecot exited during start-up")
		default:
		}
		conn, err := net.DialTimeout("tcp", d.IMAPAddr, time.Second)
		if err == nil {
			conn.SetDeadline(time.Now().Add(2 * time.Second))
			line, err := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if err == nil && strings.HasPrefix(line, "* OK") {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("dovecot did not answer on %s within %s", d.IMAPAddr, timeout)
}

func (d *Dovecot) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	pgid := d.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-d.exited
	}
	d.cmd = nil
}

func (d *Dovecot) logs() string {
	var b strings.Builder
	for _, f := range []string{"stderr.log", "dovecot.log"} {
		data, _ := os.ReadFile(filepath.Join(d.Dir, f))
		b.Write(data)
	}
	return b.String()
}

// Logs returns what Dovecot logged so far.
func (d *Dovecot) Logs() string { return d.logs() }

// Password returns the password of user.
func (d *Dovecot) Password(user string) string { return d.users[user] }

// MaildirPath is the Maildir++ root (the INBOX) of user; folders are
// ".Name" subdirectories with modified UTF-7 names. Files written there
// must be handed to the mail owner with Chown before Dovecot reads them.
func (d *Dovecot) MaildirPath(user string) string {
	return filepath.Join(d.Dir, "mail", user)
}

// Chown gives every file under user's Maildir to the mail owner, for
// tests that seed a Maildir directly while running as root.
func (d *Dovecot) Chown(user string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return filepath.WalkDir(d.MaildirPath(user), func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, d.uid, d.gid)
	})
}

// TLSConfig returns a client TLS configuration trusting this server.
func (d *Dovecot) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: d.CertPool, ServerName: "127.0.0.1"}
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// selfSignedCert returns a certificate for 127.0.0.1 and localhost that is
// its own CA, and its key, both PEM.
func selfSignedCert() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "mailhaul test server"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

func mailboxConf(mbs [][2]string) string {
	var b strings.Builder
	for _, m := range mbs {
		fmt.Fprintf(&b, "  mailbox %q {\n    special_use = %s\n    auto = create\n  }\n", m[0], m[1])
	}
	return b.String()
}
