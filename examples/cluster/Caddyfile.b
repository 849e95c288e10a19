# onepush cluster, instance B. Instance A (Caddyfile.a) is the same but for
# its ports; both share one Redis, so a login held here can be approved
# through A's device API (and the other way round). See README.md.
#
# Run from the repository root:
#   ONEPUSH_KEY=$(cat onepush.key) ONEPUSH_ADMIN_TOKEN=change-me-0123456789 ./caddy run --config examples/cluster/Caddyfile.b
{
	admin 127.0.0.1:2020
	auto_https off
	onepush {
		# Every instance must name the same Redis (and the same prefix).
		store redis {
			addresses 127.0.0.1:6379
			# password {env.REDIS_PASSWORD}
			# tls
			# For Sentinel: addresses of the Sentinels plus
			# master_name mymaster
			# (then min_replicas defaults to 1: see the README's durability stance)
			# For Cluster: several seed addresses (or one plus "cluster").
		}
		# Seals stored requests and security-code secrets before they reach
		# Redis; the same key on every instance (openssl rand -base64 32).
		encryption_key {env.ONEPUSH_KEY}
		# The phone simulator (examples/phone) receives pushes by webhook.
		webhook_allow http://127.0.0.1:9002/
	}
}

# The bank, as browsers and phones see it (behind the load balancer).
:8082 {
	bind 127.0.0.1
	onepush_device
	onepush {
		policy examples/policy/bank.yaml
	}
	reverse_proxy 127.0.0.1:9001
}

# The admin API, on an internal listener.
:9442 {
	bind 127.0.0.1
	onepush_admin {
		token {env.ONEPUSH_ADMIN_TOKEN}
	}
	respond 404
}
