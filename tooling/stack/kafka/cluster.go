// Package kafka runs real Apache Kafka on 127.0.0.1 for tests and
// development, and is the one place that knows how: the broker jars from
// Maven Central (org.apache.kafka:kafka_2.13 and a log4j2 binding), the
// KRaft storage format, the server properties and when a node is ready.
//
// A Cluster is a set of KRaft nodes, each one JVM that is both broker and
// controller, with its own ports and directory; its bootstrap list is
// derived from them. It lives in a directory:
//
//	cluster.json     what the cluster was made of: version, cluster id, nodes and their ports
//	log4j2.xml       the brokers' logging
//	node-N/          server.properties, data/, kafka.log (the broker's log),
//	                 kafka.out (the JVM's output), format.log, kafka.pid
//
// The package also serves franz-go's in-memory kfake, the embedded Kafka of
// `make run` (Embedded).
package kafka

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"blackfriday.local/tooling/stack/process"
)

// Config is what a cluster is made of and how its nodes run. Nodes, Users
// and ACL count when the cluster is made, at its first start, which formats
// its storage; later starts take the cluster as it was made.
type Config struct {
	// Nodes is the number of KRaft nodes; 0 means 1.
	Nodes int
	// Users are SCRAM users (SCRAM-SHA-256 and -512). With any, every node
	// also listens for SASL_PLAINTEXT, and the users' credentials are
	// written into the cluster metadata when it is formatted. The
	// PLAINTEXT listener stays.
	Users []User
	// TLS makes the users' listener SASL_SSL: the cluster makes a test CA
	// and a node certificate for 127.0.0.1 at its first start (CAFile).
	// Without Users it does nothing.
	TLS bool
	// ACL turns on Kafka's StandardAuthorizer with no access unless an
	// ACL grants it; the PLAINTEXT and controller listeners (User:ANONYMOUS)
	// are super users, so a harness keeps full access.
	ACL bool
	// Version is the Apache Kafka version; empty means DefaultVersion().
	Version string
	// CacheDir keeps the jars between runs; empty means DefaultCacheDir().
	CacheDir string
	// Heap is each JVM's heap options; empty means "-Xmx512m -Xms256m".
	Heap string
	// JVMOptions are more JVM options, word split.
	JVMOptions string
	// ExtraProperties are more server.properties lines.
	ExtraProperties string
	// StartTimeout bounds the wait for a node to be ready (default 120s);
	// StopTimeout the wait for a graceful stop before SIGKILL (default 30s).
	StartTimeout, StopTimeout time.Duration
	// Log receives what the cluster does, a line at a time; nil discards.
	Log io.Writer
}

// User is a SCRAM user.
type User struct{ Name, Password string }

// ParseUsers reads "NAME:PASSWORD ..." (space separated).
func ParseUsers(s string) ([]User, error) {
	var users []User
	for _, entry := range strings.Fields(s) {
		name, password, ok := strings.Cut(entry, ":")
		if !ok || name == "" || password == "" || strings.ContainsAny(name, ",=[]") || strings.ContainsAny(password, ",=[]") {
			return nil, fmt.Errorf("SCRAM user %q: want NAME:PASSWORD, without , = [ ]", name)
		}
		users = append(users, User{Name: name, Password: password})
	}
	return users, nil
}

// Node is one KRaft node: broker and controller in one JVM.
type Node struct {
	ID             int `json:"id"`
	Port           int `json:"port"`
	ControllerPort int `json:"controller_port"`
	// SASLPort is the SCRAM listener's (SASL_PLAINTEXT, or SASL_SSL with
	// TLS), when there are users.
	SASLPort int `json:"sasl_port,omitempty"`
	// DirectoryID names the node's metadata directory in the initial
	// controller set, as the storage format needs.
	DirectoryID string `json:"directory_id"`
}

// Addr is the node's PLAINTEXT address.
func (n Node) Addr() string { return "127.0.0.1:" + strconv.Itoa(n.Port) }

// SASLAddr is the node's SCRAM listener's address, or "" without one.
func (n Node) SASLAddr() string {
	if n.SASLPort == 0 {
		return ""
	}
	return "127.0.0.1:" + strconv.Itoa(n.SASLPort)
}

// layout is what a cluster was made of, kept in cluster.json.
type layout struct {
	Version   string `json:"version"`
	ClusterID string `json:"cluster_id"`
	ACL       bool   `json:"acl,omitempty"`
	TLS       bool   `json:"tls,omitempty"`
	Nodes     []Node `json:"nodes"`
}

// Cluster is a cluster of KRaft nodes in a directory.
type Cluster struct {
	dir    string
	cfg    Config
	layout layout
	made   bool // whether cluster.json exists
}

// Open returns the cluster in dir: the one made there before, or, when
// there is none yet, a new one made from cfg (with free ports) that its
// first Start creates.
func Open(dir string, cfg Config) (*Cluster, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = DefaultCacheDir()
	}
	if cfg.Heap == "" {
		cfg.Heap = "-Xmx512m -Xms256m"
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 120 * time.Second
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	c := &Cluster{dir: dir, cfg: cfg}
	b, err := os.ReadFile(c.layoutFile())
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &c.layout); err != nil {
			return nil, fmt.Errorf("%s: %w", c.layoutFile(), err)
		}
		c.made = true
		return c, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	c.layout, err = newLayout(cfg)
	return c, err
}

// Exists reports whether a cluster was made in dir.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "cluster.json"))
	return err == nil
}

func newLayout(cfg Config) (layout, error) {
	l := layout{Version: cfg.Version, ClusterID: newUUID(), ACL: cfg.ACL, TLS: cfg.TLS && len(cfg.Users) > 0}
	if l.Version == "" {
		l.Version = DefaultVersion()
	}
	taken := map[int]bool{}
	port := func() (int, error) {
		for {
			p, err := process.FreePort(0)
			if err != nil || !taken[p] {
				taken[p] = true
				return p, err
			}
		}
	}
	for id := 1; id <= max(cfg.Nodes, 1); id++ {
		n := Node{ID: id, DirectoryID: newUUID()}
		var err error
		if n.Port, err = port(); err != nil {
			return l, err
		}
		if n.ControllerPort, err = port(); err != nil {
			return l, err
		}
		if len(cfg.Users) > 0 {
			if n.SASLPort, err = port(); err != nil {
				return l, err
			}
		}
		l.Nodes = append(l.Nodes, n)
	}
	return l, nil
}

// newUUID returns a random id in the shape of Kafka's Uuid: 16 bytes,
// base64url without padding, never starting with '-'.
func newUUID() string {
	for {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		if s := base64.RawURLEncoding.EncodeToString(b); s[0] != '-' {
			return s
		}
	}
}

func (c *Cluster) layoutFile() string { return filepath.Join(c.dir, "cluster.json") }

// Dir is the cluster's directory.
func (c *Cluster) Dir() string { return c.dir }

// Version is the cluster's Apache Kafka version.
func (c *Cluster) Version() string { return c.layout.Version }

// Nodes returns the cluster's nodes, by id.
func (c *Cluster) Nodes() []Node { return append([]Node(nil), c.layout.Nodes...) }

// Bootstrap is the cluster's bootstrap list: every node's PLAINTEXT
// address, comma separated.
func (c *Cluster) Bootstrap() string {
	addrs := make([]string, len(c.layout.Nodes))
	for i, n := range c.layout.Nodes {
		addrs[i] = n.Addr()
	}
	return strings.Join(addrs, ",")
}

// SASLBootstrap is the bootstrap list of the SCRAM listeners (over TLS
// when CAFile is not ""), or "" when the cluster has none.
func (c *Cluster) SASLBootstrap() string {
	var addrs []string
	for _, n := range c.layout.Nodes {
		if a := n.SASLAddr(); a != "" {
			addrs = append(addrs, a)
		}
	}
	return strings.Join(addrs, ",")
}

// node returns the node with id.
func (c *Cluster) node(id int) (Node, error) {
	for _, n := range c.layout.Nodes {
		if n.ID == id {
			return n, nil
		}
	}
	return Node{}, fmt.Errorf("kafka: no node %d (the cluster has %d)", id, len(c.layout.Nodes))
}

// Pid returns the process id of node id, or 0 when it is not running.
func (c *Cluster) Pid(id int) int { return c.pidFile(id).Pid() }

// Start starts every node that is not running, making the cluster first if
// it is new, and waits until each is ready.
func (c *Cluster) Start(ctx context.Context) error {
	ids := make([]int, len(c.layout.Nodes))
	for i, n := range c.layout.Nodes {
		ids[i] = n.ID
	}
	return c.start(ctx, ids)
}

// StartNode starts node id, if it is not running, and waits until it is
// ready.
func (c *Cluster) StartNode(ctx context.Context, id int) error {
	if _, err := c.node(id); err != nil {
		return err
	}
	return c.start(ctx, []int{id})
}

func (c *Cluster) start(ctx context.Context, ids []int) error {
	if err := ensureTools(ctx, c.cfg.Log, false); err != nil {
		return err
	}
	libs, err := jars(ctx, c.cfg.Log, c.cfg.CacheDir, c.layout.Version)
	if err != nil {
		return err
	}
	if err := c.make(); err != nil {
		return err
	}
	// Every node is launched before any is awaited: a node is ready only
	// once a majority of the controllers has elected a leader.
	var launched []*launch
	for _, id := range ids {
		n, _ := c.node(id)
		l, err := c.launch(ctx, libs, n)
		if err != nil {
			for _, l := range launched {
				_ = c.pidFile(l.node.ID).Kill()
			}
			return err
		}
		if l != nil {
			launched = append(launched, l)
		}
	}
	errs := make([]error, len(launched))
	var wg sync.WaitGroup
	for i, l := range launched {
		wg.Go(func() { errs[i] = c.waitReady(ctx, l) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// make writes the cluster's layout and logging configuration, once.
func (c *Cluster) make() error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.dir, "log4j2.xml"), log4jConfig, 0o644); err != nil {
		return err
	}
	if c.made {
		return nil
	}
	if c.layout.TLS {
		if err := makeTLS(c.dir); err != nil {
			return fmt.Errorf("kafka: test CA: %w", err)
		}
	}
	b, err := json.MarshalIndent(c.layout, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.layoutFile(), append(b, '\n'), 0o644); err != nil {
		return err
	}
	c.made = true
	return nil
}

// Stop stops every node gracefully, all at once, and waits for them; one
// still running after the stop timeout is killed. In a cluster of several
// nodes that is no failure: a node whose controlled shutdown starts after
// the other controllers have gone waits for a quorum that will not come,
// and a kill loses nothing a restart does not recover. It is logged.
func (c *Cluster) Stop() error {
	errs := make([]error, len(c.layout.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.layout.Nodes {
		wg.Go(func() { errs[i] = c.StopNode(n.ID) })
	}
	wg.Wait()
	for i, err := range errs {
		if len(errs) > 1 && errors.Is(err, process.ErrKilled) {
			fmt.Fprintf(c.cfg.Log, "kafka: node %d: %v (the quorum left with the others)\n", c.layout.Nodes[i].ID, err)
			errs[i] = nil
		}
	}
	return errors.Join(errs...)
}

// StopNode stops node id gracefully (SIGTERM); one still running after the
// stop timeout is killed. Its data stays.
func (c *Cluster) StopNode(id int) error {
	if _, err := c.node(id); err != nil {
		return err
	}
	if pid := c.Pid(id); pid != 0 {
		fmt.Fprintf(c.cfg.Log, "kafka: stopping node %d (pid %d)\n", id, pid)
	}
	return c.pidFile(id).Stop(c.cfg.StopTimeout)
}

// KillNode kills node id with SIGKILL. Its data stays.
func (c *Cluster) KillNode(id int) error {
	if _, err := c.node(id); err != nil {
		return err
	}
	if pid := c.Pid(id); pid != 0 {
		fmt.Fprintf(c.cfg.Log, "kafka: killing node %d (pid %d) with SIGKILL\n", id, pid)
	}
	return c.pidFile(id).Kill()
}

// Destroy stops the cluster and deletes its directory.
func (c *Cluster) Destroy() error {
	err := c.Stop()
	if rmErr := os.RemoveAll(c.dir); rmErr != nil {
		err = errors.Join(err, rmErr)
	}
	return err
}
