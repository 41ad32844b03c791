// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 at the version kube-apiserver's own
// go.mod uses for its client, so the local control plane needs no downloaded binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
