// Command etcd is etcd's own server entry point, wrapped so that it builds from
// the Go module proxy: `go install` refuses etcd's module because of its replace
// lines, a wrapper module that requires it does not.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
