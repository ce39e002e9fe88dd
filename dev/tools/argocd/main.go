// Command argocd is Argo CD's application controller, repo server and git
// ask-pass helper in one binary, chosen by the name it is run as (or by
// ARGOCD_BINARY_NAME, which the repo server sets when git asks for
// credentials), like upstream's cmd/main.go. It leaves out the API server,
// UI, CLI and the other components: the stack runs Argo CD out of cluster and
// only needs what syncs Applications and computes their health.
//
// Upstream's main also calls grpc.DisableSRVLookups(); that panics in this
// slimmer binary (nothing here links the grpclb resolver it patches) and only
// matters for SRV DNS names, which a loopback stack never uses.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	appcontroller "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"
	gitaskpass "github.com/argoproj/argo-cd/v3/cmd/argocd-git-ask-pass/commands"
	reposerver "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"
	"github.com/argoproj/argo-cd/v3/common"
	"github.com/argoproj/argo-cd/v3/util/log"
)

func main() {
	// Route klog (client-go's logger) through Argo CD's logrus setup, as upstream does.
	klog.SetLogger(log.NewLogrusLogger(log.NewWithCurrentConfig()))

	name := filepath.Base(os.Args[0])
	if env := os.Getenv("ARGOCD_BINARY_NAME"); env != "" {
		name = env
	}
	var command *cobra.Command
	switch name {
	case common.CommandApplicationController:
		command = appcontroller.NewCommand()
	case common.CommandRepoServer:
		command = reposerver.NewCommand()
	case common.CommandGitAskPass:
		command = gitaskpass.NewCommand()
	default:
		fmt.Fprintf(os.Stderr, "argocd: run as %s, %s or %s (by name or ARGOCD_BINARY_NAME), not %q\n",
			common.CommandApplicationController, common.CommandRepoServer, common.CommandGitAskPass, name)
		os.Exit(2)
	}
	if err := command.Execute(); err != nil {
		os.Exit(1)
	}
}
