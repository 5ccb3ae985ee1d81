package deploy_test

import (
	"slices"
	"strings"
	"testing"

	m "blackfriday.local/test/deploy/internal/manifest"
	"blackfriday.local/test/deploy/internal/policy"
)

// schemaRule marks a seeded mistake that the strict schemas must reject.
const schemaRule = "schema"

// TestSeededMistakesAreRejected seeds one mistake at a time into a source
// file of kustomize/ (in memory), builds the variant that contains it, and
// checks that the validation rejects it with the expected rule, names the
// object and, where a case gives one, says what its check says. A case without a file seeds nothing: its variant, a wrong
// composition, is the mistake.
func TestSeededMistakesAreRejected(t *testing.T) {
	t.Parallel()
	const (
		apiDeploy = "base/api/deployment.yaml"
		aggDeploy = "base/aggregator/deployment.yaml"
	)
	dev := m.Variant{Name: "dev", Dir: "overlays/dev"}
	prod := m.Variant{Name: "prod", Dir: "overlays/prod"}
	devAll, prodAll := variant(t, "dev-all"), variant(t, "prod-all")
	prodGKE := variant(t, "prod-gke")
	prodK6 := variant(t, "prod-k6")
	// The lag autoscaler on prod without the component that gives it
	// credentials for prod's authenticated Kafka.
	prodKEDA := m.Variant{Name: "prod-keda", Dir: "overlays/prod", Components: []string{"components/keda-lag-autoscaler"}}
	const (
		writeTokens = "components/write-tokens/kustomization.yaml"
		tokensMount = "components/write-tokens/deployment.yaml"
		prodKust    = "overlays/prod/kustomization.yaml"
		kedaAuth    = "components/keda-kafka-auth/kustomization.yaml"
		kedaTA      = "components/keda-kafka-auth/trigger-authentication.yaml"
		kedaUser    = "components/keda-kafka-auth/kafka-user.yaml"
		promRule    = "components/service-monitor/prometheusrule.yaml"
		gkeHealth   = "components/gke/healthcheckpolicies.yaml"
		k6TestRun   = "components/k6-testrun/testrun.yaml"
	)
	tests := []struct {
		name       string
		file       string
		old, new   string
		variant    m.Variant
		wantRule   string
		wantObject string
		// wantMessage, if set, must be in the same violation: the check
		// the case is named for, not another that the mistake also trips.
		wantMessage string
	}{
		// Typos and wrong types: the strict schemas.
		{"typo in a Deployment field", apiDeploy, "readinessProbe:", "readinesProbe:", prod, schemaRule, "Deployment/api", ""},
		{"typo in a container field", aggDeploy, "imagePullPolicy:", "imagePulPolicy:", prod, schemaRule, "Deployment/aggregator", ""},
		{"typo in metadata", "base/valkey/service.yaml", "  labels:\n", "  lables:\n", prod, schemaRule, "Service/valkey", ""},
		{"wrong type in an HPA", "base/api/hpa.yaml", "averageUtilization: 70", "averageUtilization: seventy", prod, schemaRule, "HorizontalPodAutoscaler/api", ""},
		{"typo in the Strimzi Kafka", "base/kafka/kafka.yaml", "    listeners:", "    listener:", dev, schemaRule, "Kafka/blackfriday", ""},
		{"typo in a KafkaTopic", "base/kafka/topics.yaml", "  partitions: 12", "  partition: 12", prod, schemaRule, "KafkaTopic/sales", ""},
		{"typo in a KafkaNodePool", "base/kafka/nodepool.yaml", "  roles:", "  role:", prod, schemaRule, "KafkaNodePool/dual-role", ""},
		{"typo in an HTTPRoute", "base/gateway/httproute.yaml", "      backendRefs:\n        - name: api", "      backendRef:\n        - name: api", prod, schemaRule, "HTTPRoute/api", ""},
		{"typo in a GRPCRoute", "base/gateway/grpcroute.yaml", "            service: grpc.health.v1.Health", "            servce: grpc.health.v1.Health", prod, schemaRule, "GRPCRoute/api", ""},
		{"typo in the KEDA ScaledObject", "components/keda-lag-autoscaler/scaledobject.yaml", "maxReplicaCount:", "maxReplicasCount:", prodAll, schemaRule, "ScaledObject/aggregator", ""},
		{"typo in a ServiceMonitor", "components/service-monitor/servicemonitors.yaml", "  endpoints:\n    - port: metrics", "  endpoint:\n    - port: metrics", prodAll, schemaRule, "ServiceMonitor/api", ""},
		{"typo in the PrometheusRule", promRule, "      rules:\n", "      rule:\n", prodAll, schemaRule, "PrometheusRule/blackfriday", "additional properties 'rule' not allowed"},
		{"PrometheusRule for that is no duration", promRule, "          for: 10m\n", "          for: ten minutes\n", prodAll, schemaRule, "PrometheusRule/blackfriday", "for"},
		{"typo in a NetworkPolicy", "components/network-policies/valkey.yaml", "  policyTypes:", "  policyType:", prod, schemaRule, "NetworkPolicy/valkey", ""},
		{"typo in the KEDA TriggerAuthentication", kedaTA, "  secretTargetRef:", "  secretTargetRefs:", prodAll, schemaRule, "TriggerAuthentication/keda-lag-reader", ""},
		{"typo in a KafkaUser", kedaUser, "  authorization:", "  authorisation:", prodAll, schemaRule, "KafkaUser/keda-lag-reader", ""},
		// GKE: HealthCheckPolicy against our CRD written from GKE's API
		// reference (test/deploy/crds), PodMonitoring against GMP's.
		{"health check type GKE does not have", gkeHealth, "      type: GRPC\n", "      type: H2C\n", prodGKE, schemaRule, "HealthCheckPolicy/api", "value must be one of"},
		{"typo in a HealthCheckPolicy", gkeHealth, "      grpcHealthCheck:", "      grpcHealtCheck:", prodGKE, schemaRule, "HealthCheckPolicy/api", "additional properties 'grpcHealtCheck' not allowed"},
		{"health check threshold out of range", gkeHealth, "    unhealthyThreshold: 2\n", "    unhealthyThreshold: 11\n", prodGKE, schemaRule, "HealthCheckPolicy/api", "maximum"},
		{"health check port choice GKE does not have", gkeHealth, "        portSpecification: USE_SERVING_PORT\n        requestPath", "        portSpecification: USE_POD_PORT\n        requestPath", prodGKE, schemaRule, "HealthCheckPolicy/grafana", "value must be one of"},
		{"typo in a PodMonitoring", "components/gke/podmonitorings.yaml", "  endpoints:\n    - port: metrics", "  endpoint:\n    - port: metrics", prodGKE, schemaRule, "PodMonitoring/api", "additional properties 'endpoint' not allowed"},
		// The k6 operator's TestRun, against its CRD (k6-operator's Go module).
		{"typo in the k6 TestRun", k6TestRun, "  parallelism: 2\n", "  paralelism: 2\n", prodK6, schemaRule, "TestRun/k6-sales", "additional properties 'paralelism' not allowed"},
		{"TestRun cleanup the operator does not have", k6TestRun, "  cleanup: post\n", "  cleanup: always\n", prodK6, schemaRule, "TestRun/k6-sales", "value must be 'post'"},
		{"TestRun token Secret optional as a string", k6TestRun, "            optional: true\n", "            optional: \"yes\"\n", prodK6, schemaRule, "TestRun/k6-sales", "optional"},

		// Policies.
		{"missing readiness probe", apiDeploy, "readinessProbe:", "readinesProbe:", prod, policy.RuleProbes, "Deployment/api", ""},
		{"missing liveness probe", aggDeploy, "          livenessProbe:\n            httpGet:\n              path: /healthz\n              port: http\n            periodSeconds: 10\n            timeoutSeconds: 3\n            failureThreshold: 3\n", "", prod, policy.RuleProbes, "Deployment/aggregator", ""},
		{"missing resources on an init container", "base/valkey/statefulset.yaml", "          resources:\n            requests:\n              cpu: 10m\n              memory: 16Mi\n            limits:\n              cpu: 100m\n              memory: 32Mi\n", "", prod, policy.RuleResources, "StatefulSet/valkey", ""},
		{"latest tag in an overlay", "overlays/prod/kustomization.yaml", "  - name: blackfriday/api\n    newTag: 0.1.0", "  - name: blackfriday/api\n    newTag: latest", prod, policy.RuleImageTag, "Deployment/api", ""},
		{"overlay that forgets to pin a tag", "overlays/prod/kustomization.yaml", "  - name: blackfriday/aggregator\n    newTag: 0.1.0\n", "", prod, policy.RuleImageTag, "Deployment/aggregator", ""},
		{"third-party image on latest", "base/kustomization.yaml", "newTag: 12.3.1", "newTag: latest", prod, policy.RuleImageTag, "Deployment/grafana", ""},
		{"Service selector mismatch", "base/api/service.yaml", "  selector:\n    app.kubernetes.io/name: api", "  selector:\n    app.kubernetes.io/name: apis", prod, policy.RuleSelector, "Service/api", ""},
		{"Service targetPort that no container has", "base/api/service.yaml", "targetPort: metrics", "targetPort: metric", prod, policy.RuleSelector, "Service/api", ""},
		{"budget selector mismatch", "base/api/pdb.yaml", "      app.kubernetes.io/name: api", "      app.kubernetes.io/name: ap", prod, policy.RuleSelector, "PodDisruptionBudget/api", ""},
		{"HPA target that does not exist", "base/api/hpa.yaml", "    kind: Deployment\n    name: api\n", "    kind: Deployment\n    name: api-server\n", prod, policy.RuleAutoscaler, "HorizontalPodAutoscaler/api", ""},
		{"replicas on an HPA-scaled Deployment", apiDeploy, "  revisionHistoryLimit: 5\n", "  revisionHistoryLimit: 5\n  replicas: 3\n", prod, policy.RuleAutoscaler, "Deployment/api", ""},
		{"HPA without scale-down behaviour", "base/api/hpa.yaml", "    scaleDown:\n      stabilizationWindowSeconds: 300\n      selectPolicy: Min\n      policies:\n        - type: Percent\n          value: 25\n          periodSeconds: 60\n", "", prod, policy.RuleAutoscaler, "HorizontalPodAutoscaler/api", ""},
		{"aggregator max above partitions", "overlays/prod/kustomization.yaml", "      - op: replace\n        path: /spec/maxReplicas\n        value: 12", "      - op: replace\n        path: /spec/maxReplicas\n        value: 16", prod, policy.RulePartitions, "HorizontalPodAutoscaler/aggregator", ""},
		{"fewer partitions than the aggregator max", "base/kafka/topics.yaml", "  partitions: 12", "  partitions: 4", prod, policy.RulePartitions, "HorizontalPodAutoscaler/aggregator", ""},
		{"KEDA max above partitions", "components/keda-lag-autoscaler/scaledobject.yaml", "maxReplicaCount: 6", "maxReplicaCount: 24", prodAll, policy.RulePartitions, "ScaledObject/aggregator", ""},
		{"partitions env out of step", "base/api/env", "KAFKA_TOPIC_PARTITIONS=12", "KAFKA_TOPIC_PARTITIONS=24", prod, policy.RulePartitions, "Deployment/api", ""},
		{"password as a literal env value", apiDeploy, "              valueFrom:\n                secretKeyRef:\n                  name: valkey-users\n                  key: reader-password", "              value: hunter2", prod, policy.RulePlaintextSecret, "Deployment/api", ""},
		{"password in an env file", "base/aggregator/env", "VALKEY_USERNAME=aggregator\n", "VALKEY_USERNAME=aggregator\nVALKEY_PASSWORD=hunter2\n", prod, policy.RulePlaintextSecret, "ConfigMap/aggregator-env-", ""},
		{"literal password in Grafana provisioning", "base/grafana/datasources.yaml", "password: ${VALKEY_PASSWORD}", "password: hunter2", prod, policy.RulePlaintextSecret, "ConfigMap/grafana-provisioning-", ""},
		{"a Secret committed with the manifests", "base/valkey/service.yaml", "appProtocol: redis\n", "appProtocol: redis\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: valkey-users\nstringData:\n  reader-password: hunter2\n", prod, policy.RulePlaintextSecret, "Secret/valkey-users", ""},
		{"writable root filesystem", apiDeploy, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", prod, policy.RuleSecurityContext, "Deployment/api", ""},
		{"privilege escalation", aggDeploy, "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", prod, policy.RuleSecurityContext, "Deployment/aggregator", ""},
		{"component object outside the namespace", "components/high-availability/kustomization.yaml", "namespace: blackfriday\n", "", prod, policy.RuleNamespace, "PodDisruptionBudget/aggregator", ""},

		// Production: write tokens from a Secret, CORS allowlist, Kafka.
		{"prod without write tokens", prodKust, "  - ../../components/write-tokens\n", "", prod, policy.RuleWriteAuth, "Deployment/api", ""},
		{"tokens file on a ConfigMap volume", tokensMount, "          secret:\n            secretName: api-write-tokens", "          configMap:\n            name: api-write-tokens", prod, policy.RuleWriteAuth, "Deployment/api", ""},
		{"tokens volume mounted writable", tokensMount, "readOnly: true", "readOnly: false", prod, policy.RuleWriteAuth, "Deployment/api", ""},
		{"WRITE_TOKENS_FILE outside the Secret volume", writeTokens, "WRITE_TOKENS_FILE=/etc/api-tokens/tokens", "WRITE_TOKENS_FILE=/etc/tokens", prod, policy.RuleWriteAuth, "Deployment/api", ""},
		{"Secret volume without the tokens file", tokensMount, "path: tokens", "path: token", prod, policy.RuleWriteAuth, "Deployment/api", ""},
		{"course API's write auth left to the default", writeTokens, "      - LEGACY_WRITE_AUTH=false\n", "", prod, policy.RuleWriteAuth, "Deployment/api", ""},
		{"WRITE_TOKENS from a Secret in the environment", tokensMount, "        - name: api\n          volumeMounts:", "        - name: api\n          env:\n            - name: WRITE_TOKENS\n              valueFrom:\n                secretKeyRef:\n                  name: api-write-tokens\n                  key: tokens\n          volumeMounts:", prod, policy.RuleWriteAuth, "Deployment/api", "readable from the pod spec"},
		{"WRITE_TOKENS as a literal in the environment", writeTokens, "      - LEGACY_WRITE_AUTH=false\n", "      - LEGACY_WRITE_AUTH=false\n      - WRITE_TOKENS=hunter2hunter2hunter2\n", prod, policy.RuleWriteAuth, "Deployment/api", "WRITE_TOKENS puts tokens in the environment: use WRITE_TOKENS_FILE"},
		{"tokens Secret optional", tokensMount, "            secretName: api-write-tokens\n", "            secretName: api-write-tokens\n            optional: true\n", prod, policy.RuleWriteAuth, "Deployment/api", "is optional"},
		{"tokens in the api's env file", "base/api/env", "LOG_LEVEL=info\n", "LOG_LEVEL=info\nWRITE_TOKENS=hunter2hunter2hunter2\n", prod, policy.RulePlaintextSecret, "ConfigMap/api-env-", ""},
		{"CORS * in prod", prodKust, "CORS_ALLOWED_ORIGINS=https://api.blackfriday.example.com", "CORS_ALLOWED_ORIGINS=*", prod, policy.RuleCORS, "Deployment/api", ""},
		{"CORS origin over plain http", prodKust, "CORS_ALLOWED_ORIGINS=https://api.blackfriday.example.com", "CORS_ALLOWED_ORIGINS=http://api.blackfriday.example.com", prod, policy.RuleCORS, "Deployment/api", "production origins are https://"},
		{"prod CORS falling back to the base's *", prodKust, "      - CORS_ALLOWED_ORIGINS=https://api.blackfriday.example.com\n", "", prod, policy.RuleCORS, "Deployment/api", ""},
		{"prod Kafka without authentication", prodKust, "  - ../../components/kafka-users\n", "", prod, policy.RuleKafkaAuth, "Kafka/blackfriday", ""},
		// On the authenticated port (kafka-users), which keda-kafka-auth would
		// move it to: else only "no listener on port 9092" is reported.
		{"KEDA on prod without its credentials", "components/keda-lag-autoscaler/scaledobject.yaml", "blackfriday-kafka-bootstrap.blackfriday.svc:9092", "blackfriday-kafka-bootstrap.blackfriday.svc:9093", prodKEDA, policy.RuleKafkaAuth, "ScaledObject/aggregator", "needs SCRAM-SHA-512"},
		{"KEDA trigger without authenticationRef", kedaAuth, "      - op: add\n        path: /spec/triggers/0/authenticationRef\n        value:\n          name: keda-lag-reader\n", "", prodAll, policy.RuleKafkaAuth, "ScaledObject/aggregator", ""},
		{"KEDA trigger without TLS", kedaTA, "  tls: enable", "  tls: disable", prodAll, policy.RuleKafkaAuth, "ScaledObject/aggregator", ""},
		{"KEDA trigger with another CA", kedaTA, "      name: blackfriday-cluster-ca-cert\n", "      name: blackfriday-clients-ca-cert\n", prodAll, policy.RuleKafkaAuth, "ScaledObject/aggregator", "want the cluster CA"},
		{"KEDA trigger skipping the certificate check", "components/keda-lag-autoscaler/scaledobject.yaml", "        offsetResetPolicy: earliest\n", "        offsetResetPolicy: earliest\n        unsafeSsl: \"true\"\n", prodAll, policy.RuleKafkaAuth, "ScaledObject/aggregator", "unsafeSsl skips"},
		{"KEDA borrowing the aggregator's password", kedaTA, "      name: keda-lag-reader\n      key: password", "      name: aggregator\n      key: password", prodAll, policy.RuleKafkaAuth, "ScaledObject/aggregator", ""},
		{"KEDA user allowed to read records", kedaUser, "          name: sales\n          patternType: literal\n        operations:\n          - Describe\n", "          name: sales\n          patternType: literal\n        operations:\n          - Describe\n          - Read\n", prodAll, policy.RuleKafkaAuth, "KafkaUser/keda-lag-reader", ""},
		{"KEDA user's ACL on a topic prefix", kedaUser, "          name: sales\n          patternType: literal", "          name: sales\n          patternType: prefix", prodAll, policy.RuleKafkaAuth, "KafkaUser/keda-lag-reader", "may Describe on topic sales"},
		{"KEDA shut out by the listener's peers", kedaAuth, "      - op: add\n        path: /spec/kafka/listeners/0/networkPolicyPeers/-\n        value:\n          namespaceSelector:\n            matchLabels:\n              kubernetes.io/metadata.name: keda", "", prodAll, policy.RuleKafkaAuth, "ScaledObject/aggregator", ""},
		{"KEDA bootstrap by short name", "components/keda-lag-autoscaler/scaledobject.yaml", "blackfriday-kafka-bootstrap.blackfriday.svc:9092", "blackfriday-kafka-bootstrap:9092", devAll, policy.RuleKafkaAuth, "ScaledObject/aggregator", "is a short name"},
	}
	val := schemaValidator(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr := tree(t)
			if tt.file != "" {
				if err := tr.Replace(tt.file, tt.old, tt.new); err != nil {
					t.Fatalf("seeding %s: %v", tt.file, err)
				}
			}
			objs := build(t, tr, tt.variant)
			var got []string
			if tt.wantRule == schemaRule {
				_, got = schemaErrors(t, val, objs)
			} else {
				for _, v := range check(tt.variant, objs) {
					if v.Rule == tt.wantRule {
						got = append(got, v.String())
					}
				}
			}
			i := slices.IndexFunc(got, func(s string) bool {
				return strings.Contains(s, tt.wantObject) && strings.Contains(s, tt.wantMessage)
			})
			if i < 0 {
				t.Fatalf("check(%s seeded with %q) = %q, want a %s rejection of %s saying %q", tt.file, tt.new, got, tt.wantRule, tt.wantObject, tt.wantMessage)
			}
			t.Logf("rejected: %s", got[i])
		})
	}
}
