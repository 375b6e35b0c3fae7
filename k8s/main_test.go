package k8s_test

import (
	"testing"

	"github.com/nocrd/nocrd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
