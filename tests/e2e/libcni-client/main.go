// libcni-client drives CNI plugins through libcni, the library container
// runtimes (podman, CRI-O, containerd's go-cni, Kubernetes' dockershim) embed.
// It is built offline by the e2e_clients test from Debian's
// golang-github-containernetworking-cni-dev (GOPATH mode) and run once per
// operation, so the test can inspect the kernel state between operations;
// libcni's result cache (-cache) carries ADD's result to CHECK and DEL, as it
// does between a runtime's calls.
//
// Usage:
//
//	libcni-client -conflist F -path DIR[:DIR] -cache DIR -netns PATH -id CID \
//	    [-ifname eth0] [-caps JSON] [-args K=V;...] OP...
//
// OP is one of version, validate, add, check, del, cached. Each OP prints one
// JSON line {"op": OP, ...} on stdout; the first failing OP prints its error
// on stderr and exits 1.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

func main() {
	conflist := flag.String("conflist", "", "network configuration list file")
	path := flag.String("path", "", "plugin dirs, colon-separated")
	cache := flag.String("cache", "", "libcni cache dir (results for CHECK/DEL)")
	netns := flag.String("netns", "", "container netns path")
	id := flag.String("id", "", "container id")
	ifname := flag.String("ifname", "eth0", "interface name in the container")
	caps := flag.String("caps", "{}", "capability args (runtimeConfig), JSON object")
	cniArgs := flag.String("args", "", "CNI_ARGS, K=V;K=V")
	timeout := flag.Duration("timeout", 60*time.Second, "deadline for all ops")
	flag.Parse()

	list, err := libcni.ConfListFromFile(*conflist)
	if err != nil {
		fail("load", err)
	}
	var capArgs map[string]interface{}
	if err := json.Unmarshal([]byte(*caps), &capArgs); err != nil {
		fail("caps", err)
	}
	rt := &libcni.RuntimeConf{ContainerID: *id, NetNS: *netns, IfName: *ifname, CapabilityArgs: capArgs}
	for _, kv := range strings.Split(*cniArgs, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			rt.Args = append(rt.Args, [2]string{k, v})
		}
	}
	cni := libcni.NewCNIConfigWithCacheDir(strings.Split(*path, ":"), *cache, nil)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	for _, op := range flag.Args() {
		out := map[string]interface{}{"op": op}
		switch op {
		case "version":
			infos := map[string]interface{}{}
			for _, p := range list.Plugins {
				info, err := cni.GetVersionInfo(ctx, p.Network.Type)
				if err != nil {
					fail(op, err)
				}
				infos[p.Network.Type] = info.SupportedVersions()
			}
			out["versions"] = infos
		case "validate":
			versions, err := cni.ValidateNetworkList(ctx, list)
			if err != nil {
				fail(op, err)
			}
			out["versions"] = versions
		case "add":
			res, err := cni.AddNetworkList(ctx, list, rt)
			if err != nil {
				fail(op, err)
			}
			out["result"] = raw(res)
		case "check":
			if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
				fail(op, err)
			}
		case "del":
			if err := cni.DelNetworkList(ctx, list, rt); err != nil {
				fail(op, err)
			}
		case "cached":
			res, err := cni.GetNetworkListCachedResult(list, rt)
			if err != nil {
				fail(op, err)
			}
			if res != nil {
				out["result"] = raw(res)
			} else {
				out["result"] = nil
			}
		default:
			fail(op, fmt.Errorf("unknown op"))
		}
		line, _ := json.Marshal(out)
		fmt.Println(string(line))
	}
}

// raw renders a result as the plugin's cniVersion defines it.
func raw(res types.Result) json.RawMessage {
	b, err := json.Marshal(res)
	if err != nil {
		fail("marshal", err)
	}
	return b
}

func fail(op string, err error) {
	fmt.Fprintf(os.Stderr, "libcni-client: %s: %v\n", op, err)
	os.Exit(1)
}
